"""Idempotency claims are pruned after the horizon (ADR 0079; issue 13, finding 7).

Over the real PostgreSQL with the engine's own role: the claims table stops growing forever,
the log stays append-only, and a submit repeated after its claim is gone still gets its intent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.bootstrap import Engine, bootstrap
from services.eventstore.roles import RoleUrls
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_api import SUBMIT, request
from tests.nats_creds import connect_as


async def _engine(nats_url: str, database_url: str, state_dir: Path) -> Engine:
    engine = await bootstrap(
        Settings(relay_poll_s=0.2, state_dir=state_dir),
        nats_url=nats_url,
        database_url=database_url,
    )
    await engine.start()
    await wait_for(engine.relay.leader.is_set, what="the relay to lead")
    return engine


async def _claims(conn: asyncpg.Connection[Any]) -> list[str]:
    rows = await conn.fetch("SELECT idempotency_key FROM idempotency_keys ORDER BY 1")
    return [r["idempotency_key"] for r in rows]


async def test_old_claims_are_pruned_and_a_repeated_submit_still_finds_its_intent(
    nats_url: str, database_urls: RoleUrls, tmp_path: Path
) -> None:
    nc = await connect_as(nats_url)
    owner = await asyncpg.connect(database_urls.owner)
    engine = await _engine(nats_url, database_urls.engine, tmp_path)
    try:
        old = await request(nc, SUBMIT.format(caller="alice"), submit(key="old"))
        await request(nc, SUBMIT.format(caller="alice"), submit(key="new"))
        assert engine.claims is not None
        assert await engine.claims.prune_once() == 0  # nothing is older than the horizon
        await owner.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '31 days'"
            " WHERE idempotency_key = 'old'"
        )
        assert await engine.claims.prune_once() == 1
        assert await _claims(owner) == ["new"]
        head = await engine.store.head_position()
    finally:
        await engine.stop()
    # A fresh engine (nothing cached): the repeated submit is answered from the log.
    engine = await _engine(nats_url, database_urls.engine, tmp_path)
    try:
        again = await request(nc, SUBMIT.format(caller="alice"), submit(key="old"))
        assert again["intent_id"] == old["intent_id"] and again["duplicate"] is True
        changed = await request(
            nc, SUBMIT.format(caller="alice"), submit(key="old", amount_msat=60_000)
        )
        assert changed["ok"] is False
        assert changed["error"]["code"] == "idempotency_mismatch"
        assert await engine.store.head_position() == head  # no new event, nothing paid twice
    finally:
        await engine.stop()
        await owner.close()
        await nc.drain()


async def test_the_engine_prunes_only_through_the_bounded_function(
    database_urls: RoleUrls,
) -> None:
    conn = await asyncpg.connect(database_urls.engine)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM idempotency_keys")
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await conn.fetchval("SELECT prune_idempotency_keys(0, 10)")  # not fresh claims
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM events")
    finally:
        await conn.close()
    auditor = await asyncpg.connect(database_urls.auditor)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await auditor.fetchval("SELECT prune_idempotency_keys(86400, 10)")
    finally:
        await auditor.close()
