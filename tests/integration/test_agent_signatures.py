"""Agents sign their commands (ADR 0066), over real NATS and PostgreSQL.

The engine is built as ``corridor up`` builds it: a credential registry file, and agent keys
trusted through the log (ADR 0068): each proposed by one operator and approved by another. A
signed agent submit is accepted; a forged, replayed, revoked or over-limit one is refused with
its code, and nothing of a refused command reaches the log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.api import ConsumerConfig

from schemas.agent_key_messages import AgentKeyLimits, ApproveAgentKey, ProposeAgentKey
from services.bootstrap import Engine, bootstrap
from services.domain.principal import Principal
from services.engine.processor import CommandEnvelope
from services.identity.agent_signatures import HDR_KEY_ID, HDR_SIGNATURE, sign_command
from services.identity.lookup import RegistryFile
from services.identity.registry import Credential, Registry, registry_path, save_registry
from services.settings import Settings
from services.signing.port import b64url, key_id_for
from tests.factories import submit

API = "corridor.api.v1.intents"
NKEY = "U" + "D" * 55
LIMIT_MSAT = 1_000_000

# Fixed keys, so a failure names the same key ids every run.
BOT7 = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
BOT7_OLD = Ed25519PrivateKey.from_private_bytes(bytes([70]) * 32)
BOT8 = Ed25519PrivateKey.from_private_bytes(bytes([8]) * 32)
STRANGER = Ed25519PrivateKey.from_private_bytes(bytes([99]) * 32)


def _pub(key: Ed25519PrivateKey) -> str:
    return b64url(key.public_key().public_bytes_raw())


@pytest.fixture
async def signed(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    save_registry(
        registry_path(tmp_path),
        Registry(
            credentials=(
                Credential(id="alice", role="caller", kind="service", public_key=NKEY),
                Credential(id="bot-7", role="agent", kind="agent", public_key=NKEY),
                Credential(id="bot-8", role="agent", kind="agent", public_key=NKEY),
                Credential(id="op-1", role="operator", public_key=NKEY),
                Credential(id="op-2", role="operator", public_key=NKEY),
            )
        ),
    )
    engine = await bootstrap(
        Settings(state_dir=tmp_path),
        nats_url=nats_url,
        database_url=database_url,
        credentials=RegistryFile(registry_path(tmp_path)),
    )
    await engine.start(relay=False)
    await register(engine, "bot-7", BOT7_OLD)
    await register(engine, "bot-7", BOT7, replaces=BOT7_OLD, amount_msat_max=LIMIT_MSAT)
    await register(engine, "bot-8", BOT8)
    yield engine
    await engine.stop()


async def register(
    engine: Engine,
    agent: str,
    key: Ed25519PrivateKey,
    *,
    replaces: Ed25519PrivateKey | None = None,
    amount_msat_max: int | None = None,
) -> None:
    """Propose as op-1 and approve as op-2, through the writer loop as the intake would."""
    propose = ProposeAgentKey(
        agent_id=agent, public_key=_pub(key), proposer_id="op-1",
        limits=AgentKeyLimits(amount_msat_max=amount_msat_max),
        replaces_key_id=key_id_for(replaces.public_key().public_bytes_raw()) if replaces else None,
    )  # fmt: skip
    op1, op2 = Principal(role="operator", id="op-1"), Principal(role="operator", id="op-2")
    proposed = await engine.processor.execute(CommandEnvelope(command=propose, principal=op1))
    assert proposed.ok, proposed
    key_id = key_id_for(key.public_key().public_bytes_raw())
    approve = ApproveAgentKey(key_id=key_id, approver_id="op-2")
    approved = await engine.processor.execute(CommandEnvelope(command=approve, principal=op2))
    assert approved.ok, approved


async def send(
    nc: Client, subject: str, data: bytes, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    # As tests/integration/test_api.py's request(): a first request may meet "no responders".
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            msg = await nc.request(subject, data, timeout=10, headers=headers)
        except NoRespondersError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)  # a retry interval, not a synchronisation
            continue
        reply: dict[str, Any] = json.loads(msg.data)
        return reply


def body(**fields: Any) -> bytes:
    return json.dumps(submit(caller_id="bot-7", kind="agent", **fields)).encode()


def refusal(reply: dict[str, Any]) -> tuple[str, str | None]:
    assert reply["ok"] is False, reply
    return reply["error"]["code"], reply["error"]["field"]


async def test_a_signed_agent_submit_is_accepted_and_others_need_no_signature(
    signed: Engine, nc: Client
) -> None:
    data = body(key="signed-1")
    reply = await send(nc, f"{API}.submit.bot-7", data, sign_command(BOT7, data))
    assert reply["ok"] and reply["state"] == "dispatched", reply
    events = await signed.store.read_stream(reply["intent_id"])
    assert (events[0].type, events[0].metadata["actor"]) == ("IntentReceived", "agent:bot-7")
    # The same signed message again is the same command: idempotent, not a new intent.
    again = await send(nc, f"{API}.submit.bot-7", data, sign_command(BOT7, data))
    assert again["intent_id"] == reply["intent_id"]

    alice = json.dumps(submit(key="plain", caller_id="alice")).encode()
    plain = await send(nc, f"{API}.submit.alice", alice)
    assert plain["ok"] and plain["state"] == "dispatched", plain


async def test_forged_replayed_revoked_and_over_limit_signatures_are_refused(
    signed: Engine, nc: Client
) -> None:
    subject = f"{API}.submit.bot-7"
    data = body(key="original", amount_msat=50_000)
    good = sign_command(BOT7, data)
    over = body(key="big", amount_msat=LIMIT_MSAT + 1)
    cases = [
        ("unsigned", data, None, ("signature_missing", HDR_KEY_ID)),
        ("no signature", data, {HDR_KEY_ID: good[HDR_KEY_ID]},
         ("signature_missing", HDR_SIGNATURE)),
        ("a stranger's key", data, sign_command(STRANGER, data),
         ("signature_invalid", HDR_KEY_ID)),
        ("bot-8's key", data, sign_command(BOT8, data), ("signature_invalid", HDR_KEY_ID)),
        ("a stranger's signature, bot-7's key id", data,
         {**sign_command(STRANGER, data), HDR_KEY_ID: good[HDR_KEY_ID]},
         ("signature_invalid", HDR_SIGNATURE)),
        ("replayed, another idempotency key", body(key="replayed", amount_msat=50_000), good,
         ("signature_invalid", HDR_SIGNATURE)),
        ("replayed, another amount", body(key="original", amount_msat=50_001), good,
         ("signature_invalid", HDR_SIGNATURE)),
        ("revoked key", data, sign_command(BOT7_OLD, data), ("key_revoked", HDR_KEY_ID)),
        ("over the key's limit", over, sign_command(BOT7, over),
         ("agent_limit_exceeded", "amount_msat")),
    ]  # fmt: skip
    for what, payload, headers, expected in cases:
        assert refusal(await send(nc, subject, payload, headers)) == expected, what
    # bot-8 replaying bot-7's signed command under its own subject: not its key.
    as_bot8 = body(key="original", amount_msat=50_000).replace(b'"bot-7"', b'"bot-8"')
    assert refusal(await send(nc, f"{API}.submit.bot-8", as_bot8, good)) == (
        "signature_invalid",
        HDR_KEY_ID,
    )
    assert await intent_events(signed) == 0

    # The command the signature was made for still goes through.
    accepted = await send(nc, subject, data, good)
    assert accepted["ok"], accepted


async def test_the_command_stream_dead_letters_unsigned_agent_commands(
    signed: Engine, nc: Client
) -> None:
    js = nc.jetstream()
    dlq = await js.pull_subscribe(
        "corridor.dlq.v1.>", durable="agent-sig-dlq", stream="CORRIDOR_DLQ", config=ConsumerConfig()
    )
    data = body(key="stream-forged")
    await js.publish("corridor.cmd.v1.intents.submit.bot-7", data, headers=sign_command(BOT8, data))
    (dead,) = await dlq.fetch(batch=1, timeout=10)
    assert (dead.headers["Corridor-Error-Code"], dead.headers["Corridor-Error-Field"]) == (
        "signature_invalid",
        HDR_KEY_ID,
    )
    await dead.ack()
    assert await intent_events(signed) == 0


async def intent_events(engine: Engine) -> int:
    """Events in the log besides the agent keys' own stream."""
    async with engine.store.pool.acquire() as conn:
        count = await conn.fetchval("SELECT count(*) FROM events WHERE stream_id <> 'agent-keys'")
    return int(count)
