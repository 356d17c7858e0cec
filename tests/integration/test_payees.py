"""Payees through the real engine and PostgreSQL (ADR 0270): an operator onboards over NATS,
the log records the payee with no personal data, the name lives in ``payee_personal_data``
(which the auditor's role may not read), and erasure removes it from every table and view
while the log's hash chain still verifies. The issue's third "Done when", at the store level;
``tests/e2e/test_payees_cli.py`` does it again through the CLI against ``corridor up``."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client

from services.bootstrap import Engine
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls
from services.payees import roster
from services.payees.directory import PayeeDirectory, validated

OPERATOR = "ops-1"
NAME = "Ximena Quokka-Vasquez"  # distinctive: found by a text search if it leaked anywhere
EMAIL = "xq-contractor@example.org"
PUBKEY = "03" + "5c" * 32


async def request(nc: Client, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(
        f"corridor.api.v1.intents.{verb}.{OPERATOR}", json.dumps(body).encode(), timeout=10
    )
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def onboard(key: str = "payee-key-1", **changes: Any) -> dict[str, Any]:
    return {
        "type": "OnboardPayee", "version": 1, "idempotency_key": key, "region": "us",
        "wallet_pubkey": PUBKEY, "wallet_node": "wallet-0123456789ab", "liquidity": "channel",
    } | changes  # fmt: skip


async def tables_holding(owner_url: str, *needles: str) -> list[str]:
    """Every table and view of the database whose rows' text contains one of ``needles``."""
    conn = await asyncpg.connect(owner_url)
    try:
        relations = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        found = []
        for r in relations:
            name = f'"{r["table_schema"]}"."{r["table_name"]}"'
            for needle in needles:
                hit = await conn.fetchval(
                    f"SELECT count(*) FROM {name} AS t WHERE strpos(t::text, $1) > 0", needle
                )
                if hit:
                    found.append(f"{name}: {needle}")
        return found
    finally:
        await conn.close()


async def test_onboard_erase_and_the_chain_still_verifies(
    engine: Engine, nc: Client, store: PostgresEventStore, database_urls: RoleUrls
) -> None:
    accepted = await request(nc, "payee_onboard", onboard())
    assert accepted["ok"] and accepted["state"] == "active", accepted
    payee_id = accepted["intent_id"]
    assert payee_id.startswith("payee-")
    again = await request(nc, "payee_onboard", onboard())
    assert (again["intent_id"], again["duplicate"]) == (payee_id, True)
    other = await request(nc, "payee_onboard", onboard(region="eu"))
    assert other["error"]["code"] == "idempotency_key_reused"

    # A name sent to the engine is refused by the schema, and not repeated in the reply.
    leaked = await request(nc, "payee_onboard", onboard("payee-key-2", name=NAME))
    assert not leaked["ok"] and NAME not in json.dumps(leaked)

    directory = PayeeDirectory(store.pool)
    await directory.put(validated(payee_id, NAME, EMAIL))
    assert (await directory.get(payee_id)) is not None
    # The log never had it; only the personal-data table does.
    assert await tables_holding(database_urls.owner, NAME, EMAIL) == [
        f'"public"."payee_personal_data": {NAME}',
        f'"public"."payee_personal_data": {EMAIL}',
    ]

    # Auditors read the log, not people's names (0006 revokes the default SELECT).
    auditor = await asyncpg.connect(database_urls.auditor)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await auditor.fetch("SELECT * FROM payee_personal_data")
        assert (
            await auditor.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", payee_id)
            == 1
        )
    finally:
        await auditor.close()

    erase = {"type": "ErasePayee", "version": 1, "payee_id": payee_id}
    erased = await request(nc, "payee_erase", erase)
    assert erased["ok"] and erased["state"] == "erased", erased
    assert await directory.erase(payee_id)
    assert (await request(nc, "payee_erase", erase))["duplicate"]
    assert not await directory.erase(payee_id)

    assert await tables_holding(database_urls.owner, NAME, EMAIL) == []
    view = await engine.processor.view(payee_id)
    assert [e.type for e in view.events] == ["PayeeOnboarded", "PayeeErased"]  # type: ignore[union-attr]
    report = await store.verify_chain()
    assert report.ok, report
    assert await roster.erased_ids(store) == [payee_id]

    # A restored backup brings the row back; the log's erasures delete it again.
    await directory.put(validated(payee_id, NAME, EMAIL))
    assert await directory.erase_all(await roster.erased_ids(store)) == 1
    assert await tables_holding(database_urls.owner, NAME, EMAIL) == []


async def test_only_operators_onboard_and_unknown_payees_are_not_erased(
    engine: Engine, nc: Client
) -> None:
    unknown = "payee-00000000-0000-0000-0000-000000000000"
    missing = await request(
        nc, "payee_erase", {"type": "ErasePayee", "version": 1, "payee_id": unknown}
    )
    assert missing["error"]["code"] == "unknown_payee"
    # A caller's subject is not a payee verb at all.
    msg = await nc.request(
        "corridor.api.v1.intents.payee_onboard", json.dumps(onboard()).encode(), timeout=10
    )
    assert not json.loads(msg.data)["ok"]


async def test_the_personal_data_table_grants(database_urls: RoleUrls) -> None:
    """Exactly: the engine's role reads, writes and erases rows; the auditor's nothing; the
    owner owns it (0006, ADR 0270)."""
    privileges = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
    conn = await asyncpg.connect(database_urls.owner)
    try:
        held = {
            role: {
                p for p in privileges
                if await conn.fetchval(
                    "SELECT has_table_privilege($1, 'payee_personal_data', $2)", role, p
                )
            }
            for role in ("corridor_engine", "corridor_auditor")
        }  # fmt: skip
        owner = await conn.fetchval(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'payee_personal_data'"
        )
    finally:
        await conn.close()
    assert held == {"corridor_engine": {"SELECT", "INSERT", "UPDATE", "DELETE"},
                    "corridor_auditor": set()}  # fmt: skip
    assert owner == "corridor_owner"
