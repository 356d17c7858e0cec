"""Agent keys as events under the two-person rule (ADR 0068), over a real nats-server serving
the role table with every user's own credential, and a real PostgreSQL.

A human principal proposes an agent's key, an operator approves it; the proposer cannot
approve; a key awaiting approval or revoked is refused at once, in this engine and in another
engine process on the same database; a command over the key's own limits is refused with
``agent_limit_exceeded`` and nothing is dispatched, also after a restart; the intent records
the human it was made on behalf of.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client

from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.bus.jetstream import CREDS_ENV, connect, ensure_streams
from services.devstack.nats import NatsServer
from services.identity import nats_auth
from services.identity.agent_signatures import HDR_KEY_ID, sign_command
from services.identity.lookup import RegistryFile
from services.identity.registry import load_registry, registry_path
from services.settings import Settings
from services.signing.port import b64url, key_id_for
from tests.conftest import wait_for
from tests.factories import submit
from tests.nats_creds import connect_as

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("NATS_URL")), reason="starts its own nats-server with its own users"
)

USERS: dict[str, tuple[str, str | None]] = {
    "alice": ("caller", "human"),  # sponsors bot-7
    "carol": ("caller", "service"),
    "bot-7": ("agent", "agent"),
    "op-1": ("operator", None),
    "op-2": ("operator", None),
}
AGENTS = subjects.AGENTS_API_PREFIX
BOT7 = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
BOT7_ID = key_id_for(BOT7.public_key().public_bytes_raw())
AMOUNT_MAX_MSAT = 100_000
WINDOW_MAX_MSAT = 150_000


@dataclass
class User:
    nc: Client
    errors: list[str] = field(default_factory=list)

    async def ask(self, subject: str, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        msg = await self.nc.request(subject, json.dumps(body).encode(), timeout=10,
                                    headers=headers)  # fmt: skip
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def publish_refused(self, subject: str) -> None:
        await self.nc.publish(subject, b"{}")
        await self.nc.flush()
        wanted = f'permissions violation for publish to "{subject}"'.lower()
        await wait_for(lambda: any(wanted in e.lower() for e in self.errors),
                       what=f"a refusal of {subject}")  # fmt: skip


@dataclass
class Stack:
    url: str
    home: Path
    seeds: dict[str, Path]
    database_url: str
    users: dict[str, User] = field(default_factory=dict)

    async def engine(self) -> Engine:
        engine = await bootstrap(
            Settings(state_dir=self.home), nats_url=self.url, database_url=self.database_url,
            credentials=RegistryFile(registry_path(self.home)),
        )  # fmt: skip
        await engine.start(relay=False)
        return engine


@pytest.fixture
async def stack(tmp_path: Path, database_url: str) -> AsyncIterator[Stack]:
    home = tmp_path / "state"
    key = nats_auth.read_public_key(Path(os.environ[CREDS_ENV]))
    nats_auth.register_key(home, role="engine", ident="harness", public_key=key)
    seeds = {
        name: nats_auth.ensure(home, role=role, ident=name, kind=kind)  # type: ignore[arg-type]
        for name, (role, kind) in USERS.items()
    }
    server = NatsServer(
        tmp_path / "nats", registry=load_registry(registry_path(home)), sync_interval="2m"
    )
    server.start()
    made = Stack(url=server.url, home=home, seeds=seeds, database_url=database_url)
    try:
        nc = await connect(server.url, name="test-engine")
        await ensure_streams(nc.jetstream(), duplicate_window_s=60)
        await nc.close()
        for name in USERS:
            errors: list[str] = []

            async def record(exc: Exception, errors: list[str] = errors) -> None:
                errors.append(str(exc))

            user_nc = await connect_as(server.url, seeds[name], error_cb=record)
            made.users[name] = User(nc=user_nc, errors=errors)
        yield made
    finally:
        for user in made.users.values():
            await user.nc.close()
        server.stop()


def propose(proposer: str, **limits: int) -> dict[str, Any]:
    return {"type": "ProposeAgentKey", "version": 1, "agent_id": "bot-7",
            "public_key": b64url(BOT7.public_key().public_bytes_raw()),
            "proposer_id": proposer, "limits": limits}  # fmt: skip


def approve(approver: str) -> dict[str, Any]:
    return {"type": "ApproveAgentKey", "version": 1, "key_id": BOT7_ID, "approver_id": approver}


async def agent_submit(stack: Stack, key: str, amount_msat: int) -> dict[str, Any]:
    body = submit(key=key, caller_id="bot-7", kind="agent", amount_msat=amount_msat)
    data = json.dumps(body).encode()
    return await stack.users["bot-7"].ask(
        f"{subjects.API_PREFIX}.submit.bot-7", body, headers=sign_command(BOT7, data)
    )


def error(reply: dict[str, Any]) -> tuple[str, str | None]:
    assert reply["ok"] is False, reply
    return reply["error"]["code"], reply["error"]["field"]


async def count(engine: Engine, event_type: str) -> int:
    async with engine.store.pool.acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM events WHERE type = $1", event_type)
    return int(n)


async def test_a_human_proposes_an_operator_approves_and_the_intent_says_for_whom(
    stack: Stack,
) -> None:
    engine = await stack.engine()
    alice, op1, op2 = stack.users["alice"], stack.users["op-1"], stack.users["op-2"]
    try:
        # Nobody but operators and human principals may touch keys; only operators approve.
        await stack.users["carol"].publish_refused(f"{AGENTS}.propose.carol")
        await stack.users["bot-7"].publish_refused(f"{AGENTS}.propose.bot-7")
        await alice.publish_refused(f"{AGENTS}.approve.alice")

        proposed = await alice.ask(f"{AGENTS}.propose.alice", propose("alice"))
        assert proposed["ok"] and proposed["keys"][0]["status"] == "proposed", proposed
        # A key awaiting approval is trusted by nobody: as an unknown key.
        assert error(await agent_submit(stack, "early", 10_000)) == (
            "signature_invalid", HDR_KEY_ID,
        )  # fmt: skip
        # An operator's own proposal cannot be approved by the same operator.
        other = Ed25519PrivateKey.from_private_bytes(bytes([8]) * 32)
        own = {**propose("op-1"), "agent_id": "bot-8",
               "public_key": b64url(other.public_key().public_bytes_raw())}  # fmt: skip
        assert (await op1.ask(f"{AGENTS}.propose.op-1", own))["ok"]
        own_id = key_id_for(other.public_key().public_bytes_raw())
        refused = await op1.ask(f"{AGENTS}.approve.op-1",
                                {**approve("op-1"), "key_id": own_id})  # fmt: skip
        assert error(refused) == ("two_person_rule", "approver_id")
        # Nor can an operator approve in another's name: identity is the credential's.
        spoofed = await op1.ask(f"{AGENTS}.approve.op-1", approve("op-2"))
        assert error(spoofed) == ("identity_mismatch", "approver_id")

        approved = await op2.ask(f"{AGENTS}.approve.op-2", approve("op-2"))
        assert approved["ok"] and approved["keys"][0]["status"] == "approved", approved
        reply = await agent_submit(stack, "after", 10_000)
        assert reply["ok"] and reply["state"] == "dispatched", reply
        received = (await engine.store.read_stream(reply["intent_id"]))[0]
        assert received.payload["on_behalf_of"] == "alice"
        assert received.payload["agent_key_id"] == BOT7_ID
        # The log names both people and each one's role.
        steps = [
            (e.type, e.metadata["actor"]) for e in await engine.store.read_stream("agent-keys")
        ]
        assert ("AgentKeyProposed", "caller:alice") in steps
        assert ("AgentKeyApproved", "operator:op-2") in steps
        listed = await alice.ask(f"{subjects.AGENTS_LIST}.caller.alice",
                                 {"type": "ListAgentKeys", "version": 1})  # fmt: skip
        assert [k["key_id"] for k in listed["keys"]] == [BOT7_ID]  # only what alice sponsors
    finally:
        await engine.stop()


async def test_a_revoked_key_is_refused_at_once_here_and_within_seconds_elsewhere(
    stack: Stack,
) -> None:
    engine = await stack.engine()
    other = await stack.engine()  # a second engine process on the same database
    try:
        assert (await stack.users["alice"].ask(f"{AGENTS}.propose.alice", propose("alice")))["ok"]
        assert (await stack.users["op-1"].ask(f"{AGENTS}.approve.op-1", approve("op-1")))["ok"]
        # Whichever engine committed the approval trusts the key at once, the other within
        # a second (it follows the log).
        await wait_for(lambda: all(e.processor.agent_keys.find(BOT7_ID) is not None
                                   for e in (engine, other)),
                       timeout_s=5, what="both engines trusting the key")  # fmt: skip
        assert (await agent_submit(stack, "before", 10_000))["ok"]

        revoke = {"type": "RevokeAgentKey", "version": 1, "agent_id": "bot-7",
                  "revoker_id": "alice"}  # fmt: skip
        revoked = await stack.users["alice"].ask(f"{AGENTS}.revoke.alice", revoke)  # the sponsor
        assert revoked["ok"] and revoked["keys"][0]["status"] == "revoked", revoked

        def refused_by_both() -> bool:
            return all(
                (k := e.processor.agent_keys.find(BOT7_ID)) is not None and k.revoked
                for e in (engine, other)
            )

        await wait_for(refused_by_both, timeout_s=5, what="both engines refusing the key")
        for attempt in range(4):  # whichever engine's intake answers
            assert error(await agent_submit(stack, f"after-{attempt}", 10_000)) == (
                "key_revoked", HDR_KEY_ID,
            )  # fmt: skip
    finally:
        await other.stop()
        await engine.stop()


async def test_over_the_keys_limits_nothing_is_dispatched_also_after_a_restart(
    stack: Stack,
) -> None:
    engine = await stack.engine()
    try:
        limits = {"amount_msat_max": AMOUNT_MAX_MSAT, "window_s": 3600,
                  "window_msat_max": WINDOW_MAX_MSAT}  # fmt: skip
        assert (await stack.users["alice"].ask(f"{AGENTS}.propose.alice",
                                               propose("alice", **limits)))["ok"]  # fmt: skip
        assert (await stack.users["op-1"].ask(f"{AGENTS}.approve.op-1", approve("op-1")))["ok"]

        over = await agent_submit(stack, "too-big", AMOUNT_MAX_MSAT + 1)
        assert error(over) == ("agent_limit_exceeded", "amount_msat")
        assert over["error"]["limit"] == AMOUNT_MAX_MSAT
        # 100,000 + 1,000 fee budget held; 50,000 + 1,000 more would pass 150,000.
        first = await agent_submit(stack, "first", AMOUNT_MAX_MSAT)
        assert first["ok"] and first["state"] == "dispatched", first
        second = await agent_submit(stack, "second", 50_000)
        assert error(second) == ("agent_limit_exceeded", "amount_msat")
        assert second["error"]["limit"] == WINDOW_MAX_MSAT
        # A retry of the accepted command is the same intent, not a limit refusal.
        assert (await agent_submit(stack, "first", AMOUNT_MAX_MSAT))["intent_id"] == (
            first["intent_id"]
        )
        assert await count(engine, "IntentReceived") == 1
        assert await count(engine, "IntentDispatched") == 1
    finally:
        await engine.stop()
    engine = await stack.engine()  # the window is rebuilt from the log
    try:
        assert error(await agent_submit(stack, "third", 50_000)) == (
            "agent_limit_exceeded", "amount_msat",
        )  # fmt: skip
        assert (await agent_submit(stack, "small", 48_000))["ok"]  # 101,000 + 49,000 fits
        assert await count(engine, "IntentDispatched") == 2
    finally:
        await engine.stop()
