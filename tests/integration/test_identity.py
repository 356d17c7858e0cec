"""Identity comes from the credential, never from the payload (ADR 0061), over real NATS and
PostgreSQL: the attacks of the trust-boundary review, each refused, and the log's ``actor``.

The engine here has a credential registry; the subject's last token is taken as the
authenticated sender (the server's per-credential publish permissions make it so, ADR 0060).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client
from nats.js.api import ConsumerConfig

from services.bootstrap import Engine, bootstrap
from services.domain.principal import Principal
from services.engine.event_codec import POLICY_STREAM
from services.identity.agent_keys import AgentKeys, IndexedAgentKeys, agent_key
from services.identity.agent_signatures import sign_command
from services.identity.lookup import IndexedRegistry, RegistryFile
from services.identity.registry import Credential, Registry, Role, save_registry
from services.policy.loader import load_default_policy
from services.settings import Settings
from services.signing.port import b64url
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_api import request

API = "corridor.api.v1.intents"
KEY = "U" + "D" * 55


def credential(role: Role, ident: str, **extra: Any) -> Credential:
    return Credential(id=ident, role=role, public_key=KEY, **extra)


REGISTRY = Registry(
    credentials=(
        credential("caller", "alice", kind="service"),
        credential("caller", "bob", kind="human"),
        credential("agent", "bot-7", kind="agent"),
        # One person with an agent's and an operator's credential: still one person.
        credential("agent", "agent-7", kind="agent"),
        credential("operator", "agent-7"),
        credential("operator", "op-a"),
        credential("operator", "op-b"),
        credential("auditor", "aud-1"),
        credential("executor", "us-lnd", region="us", node="us-lnd"),
        credential("executor", "eu-lnd", region="eu", node="eu-lnd"),
    )
)
# Agents sign their commands (ADR 0066): one fixed key each.
AGENT_SIGNING_KEYS = {
    ident: Ed25519PrivateKey.from_private_bytes(ident.encode().ljust(32, b"\0"))
    for ident in ("bot-7", "agent-7")
}
AGENT_KEYS = IndexedAgentKeys(
    AgentKeys(
        keys=tuple(
            agent_key(ident, b64url(key.public_key().public_bytes_raw()))
            for ident, key in AGENT_SIGNING_KEYS.items()
        )
    )
)
# Above the agents' review band (10,000 sat), inside their hourly budget: tier approval.
APPROVAL_MSAT = 15_000_000


async def _engine(nats_url: str, database_url: str, registry: Any) -> Engine:
    engine = await bootstrap(
        Settings(), nats_url=nats_url, database_url=database_url, credentials=registry,
        agent_keys=AGENT_KEYS,
    )  # fmt: skip
    await engine.start(relay=False)
    return engine


@pytest.fixture
async def secured(nats_url: str, database_url: str) -> AsyncIterator[Engine]:
    engine = await _engine(nats_url, database_url, IndexedRegistry(REGISTRY))
    yield engine
    await engine.stop()


def outcome(
    intent_id: str, kind: str, *, region: str = "us", node: str = "us-lnd"
) -> dict[str, Any]:
    body = {"type": "RecordPaymentOutcome", "version": 1, "intent_id": intent_id, "attempt": 1,
            "outcome": kind, "region": region, "node": node}  # fmt: skip
    if kind == "failed":
        body |= {"failure_reason": "no_route", "confirmed_not_paid": True}
    return body


def approve(intent_id: str, operator_id: str) -> dict[str, Any]:
    return {"type": "ApprovePaymentIntent", "version": 1, "intent_id": intent_id,
            "operator_id": operator_id}  # fmt: skip


async def signed_request(nc: Client, agent: str, body: dict[str, Any]) -> dict[str, Any]:
    """``request`` for an agent's submit, signed with its key (ADR 0066)."""
    data = json.dumps(body).encode()
    headers = sign_command(AGENT_SIGNING_KEYS[agent], data)
    msg = await nc.request(f"{API}.submit.{agent}", data, timeout=10, headers=headers)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def refusal(reply: dict[str, Any]) -> tuple[str, str | None]:
    assert reply["ok"] is False, reply
    return reply["error"]["code"], reply["error"]["field"]


async def _events(engine: Engine, stream_id: str) -> list[tuple[str, str]]:
    return [(e.type, e.metadata["actor"]) for e in await engine.store.read_stream(stream_id)]


async def test_a_forged_outcome_from_another_node_moves_nothing(
    secured: Engine, nc: Client
) -> None:
    """Finding 1: a forged ``failed, confirmed_not_paid`` for a keysend in flight on us-lnd
    re-routed it to eu-lnd, and the network then paid twice."""
    submitted = await request(nc, f"{API}.submit.alice", submit(key="forged"))
    intent_id = submitted["intent_id"]
    assert submitted["state"] == "dispatched"
    in_flight = await request(nc, f"{API}.outcome.us-lnd", outcome(intent_id, "in_flight"))
    assert in_flight["state"] == "in_flight", in_flight

    forged = outcome(intent_id, "failed")
    # The attack as reproduced: any token, the payload names us-lnd.
    assert refusal(await request(nc, f"{API}.outcome.mallory", forged)) == (
        "identity_mismatch", "node",
    )  # fmt: skip
    # A token that is no executor's.
    own_name = outcome(intent_id, "failed", node="mallory")
    assert refusal(await request(nc, f"{API}.outcome.mallory", own_name)) == (
        "forbidden",
        "subject",
    )
    # Another node's executor speaking for us-lnd, or us-lnd claiming another region.
    assert refusal(await request(nc, f"{API}.outcome.eu-lnd", forged)) == (
        "identity_mismatch", "node",
    )  # fmt: skip
    elsewhere = outcome(intent_id, "failed", region="eu")
    assert refusal(await request(nc, f"{API}.outcome.us-lnd", elsewhere)) == (
        "identity_mismatch", "region",
    )  # fmt: skip
    # The same forgery through the command stream is dead-lettered with the code and field.
    js = nc.jetstream()
    dlq = await js.pull_subscribe(
        "corridor.dlq.v1.>", durable="identity-dlq", stream="CORRIDOR_DLQ", config=ConsumerConfig()
    )
    await js.publish("corridor.cmd.v1.intents.outcome.eu-lnd", json.dumps(forged).encode())
    (dead,) = await dlq.fetch(batch=1, timeout=10)
    assert (dead.headers["Corridor-Error-Code"], dead.headers["Corridor-Error-Field"]) == (
        "identity_mismatch", "node",
    )  # fmt: skip
    await dead.ack()

    # eu-lnd's executor reporting for itself is heard, recorded, and moves nothing: the
    # attempt went to us-lnd (ADR 0203 relies on this).
    own = outcome(intent_id, "failed", region="eu", node="eu-lnd")
    ignored = await request(nc, f"{API}.outcome.eu-lnd", own)
    assert ignored["ok"] and ignored["state"] == "in_flight", ignored

    assert await _events(secured, intent_id) == [
        ("IntentReceived", "caller:alice"),
        ("IntentPolicyChecked", "caller:alice"),
        ("IntentRouted", "caller:alice"),
        ("IntentDispatched", "caller:alice"),
        ("PaymentInFlightReported", "executor:us-lnd"),
        ("OutcomeIgnored", "executor:eu-lnd"),
    ]
    stream = await secured.store.read_stream(intent_id)
    assert stream[-1].payload["reason"] == "wrong_node"
    status = await request(nc, f"{API}.status", {"type": "GetPaymentIntentStatus", "version": 1,
                                                   "intent_id": intent_id})  # fmt: skip
    assert (status["state"], status["attempt"]) == ("in_flight", 1)


async def test_payload_identities_that_disagree_with_the_subject_are_refused(
    secured: Engine, nc: Client
) -> None:
    cancel = {"type": "CancelPaymentIntent", "version": 1, "intent_id": "x",
              "caller": {"id": "alice", "kind": "service"}}  # fmt: skip
    propose = {"type": "ProposePolicy", "version": 1, "policy_version": 2,
               "document": _document(2), "proposer_id": "op-b"}  # fmt: skip
    cases = [
        (f"{API}.submit.alice", submit(caller_id="bob", kind="human"), "identity_mismatch",
         "caller.id"),
        # Finding 2: an agent that declares itself a service skips the agents' tiers.
        (f"{API}.submit.bot-7", submit(caller_id="bot-7", kind="service"), "identity_mismatch",
         "caller.kind"),
        (f"{API}.submit.mallory", submit(caller_id="mallory"), "forbidden", "subject"),
        (f"{API}.cancel.bob", cancel, "identity_mismatch", "caller.id"),
        (f"{API}.approve.op-a", approve("x", "op-b"), "identity_mismatch", "operator_id"),
        (f"{API}.approve.bot-7", approve("x", "bot-7"), "forbidden", "subject"),
        ("corridor.api.v1.policy.propose.op-a", propose, "identity_mismatch", "proposer_id"),
    ]  # fmt: skip
    for subject, body, code, field in cases:
        assert refusal(await request(nc, subject, body)) == (code, field), subject
    assert await secured.store.head_position() == 0

    # With the kind the registry holds, the agent gets the agents' tier.
    agent = submit(key="big", caller_id="bot-7", kind="agent", amount_msat=APPROVAL_MSAT)
    reply = await signed_request(nc, "bot-7", agent)
    assert reply["state"] == "awaiting_approval", reply
    assert (await _events(secured, reply["intent_id"]))[0] == ("IntentReceived", "agent:bot-7")


async def test_an_operator_cannot_approve_their_own_intent(secured: Engine, nc: Client) -> None:
    """Finding 2: an agent approved its own intent as operator ``agent-7`` and it settled."""
    body = submit(key="self", caller_id="agent-7", kind="agent", amount_msat=APPROVAL_MSAT)
    waiting = await signed_request(nc, "agent-7", body)
    assert waiting["state"] == "awaiting_approval", waiting
    intent_id = waiting["intent_id"]
    self_approved = await request(nc, f"{API}.approve.agent-7", approve(intent_id, "agent-7"))
    assert refusal(self_approved) == ("two_person_rule", "operator_id")
    spoofed = await request(nc, f"{API}.approve.agent-7", approve(intent_id, "op-a"))
    assert refusal(spoofed) == ("identity_mismatch", "operator_id")
    assert [t for t, _ in await _events(secured, intent_id)][-1] == "IntentApprovalRequested"

    approved = await request(nc, f"{API}.approve.op-a", approve(intent_id, "op-a"))
    assert approved["state"] == "dispatched", approved
    assert (await _events(secured, intent_id))[3] == ("IntentApproved", "operator:op-a")


async def test_without_a_registry_the_caller_still_cannot_approve_their_own_intent(
    engine: Engine, nc: Client
) -> None:
    body = submit(key="self", caller_id="agent-7", kind="agent", amount_msat=APPROVAL_MSAT)
    waiting = await request(nc, f"{API}.submit.agent-7", body)
    assert waiting["state"] == "awaiting_approval", waiting
    reply = await request(nc, f"{API}.approve.agent-7", approve(waiting["intent_id"], "agent-7"))
    assert refusal(reply) == ("two_person_rule", "operator_id")


def _document(version: int) -> dict[str, Any]:
    document: dict[str, Any] = msgspec.to_builtins(load_default_policy())
    document["version"] = version
    return document


async def test_the_policy_proposer_cannot_approve(secured: Engine, nc: Client) -> None:
    """Finding 2: one client proposed policy v2 as ``alice`` and approved it as ``bob``. Each
    identity is now a credential's; the two-person rule compares those."""
    policy = "corridor.api.v1.policy"
    propose = {"type": "ProposePolicy", "version": 1, "policy_version": 2,
               "document": _document(2), "proposer_id": "op-a"}  # fmt: skip
    assert (await request(nc, f"{policy}.propose.op-a", propose))["ok"]
    approval = {"type": "ApprovePolicy", "version": 1, "policy_version": 2}
    own = await request(nc, f"{policy}.approve.op-a", {**approval, "approver_id": "op-a"})
    assert refusal(own) == ("two_person_rule", "approver_id")
    as_bob = await request(nc, f"{policy}.approve.op-a", {**approval, "approver_id": "op-b"})
    assert refusal(as_bob) == ("identity_mismatch", "approver_id")
    nobody = await request(nc, f"{policy}.approve.alice", {**approval, "approver_id": "alice"})
    assert refusal(nobody) == ("forbidden", "subject")  # a caller is no operator

    approved = await request(nc, f"{policy}.approve.op-b", {**approval, "approver_id": "op-b"})
    assert approved["ok"] and approved["active_version"] == 2, approved
    stream = await secured.store.read_stream(POLICY_STREAM)
    assert [(e.type, e.metadata["actor"]) for e in stream] == [
        ("PolicyProposed", "operator:op-a"),
        ("PolicyActivated", "operator:op-b"),
    ]
    assert (stream[1].payload["proposer_id"], stream[1].payload["approver_id"]) == ("op-a", "op-b")


async def test_intents_are_read_by_their_owner_operators_auditors_and_their_nodes(
    secured: Engine, nc: Client, nats_url: str, database_url: str
) -> None:
    intent_id = (await request(nc, f"{API}.submit.alice", submit(key="read")))["intent_id"]
    get = {"type": "GetPaymentIntent", "version": 1, "intent_id": intent_id}
    status = {"type": "GetPaymentIntentStatus", "version": 1, "intent_id": intent_id}
    for reader in ("caller.alice", "operator.op-a", "auditor.aud-1"):
        view = await request(nc, f"{API}.get.{reader}", get)
        assert view["ok"] and view["stream_version"] == 4, (reader, view)
    for reader in ("caller.alice", "operator.op-b", "auditor.aud-1", "executor.us-lnd"):
        answered = await request(nc, f"{API}.status.{reader}", status)
        assert answered["ok"] and answered["state"] == "dispatched", (reader, answered)
    # Another caller, or a node the intent never went to, learns nothing, not even that it
    # exists (intent ids derive from caller id and idempotency key, so they can be guessed).
    missing = ("not_found", "intent_id")
    assert refusal(await request(nc, f"{API}.get.caller.bob", get)) == missing
    assert refusal(await request(nc, f"{API}.status.caller.bob", status)) == missing
    assert refusal(await request(nc, f"{API}.status.executor.eu-lnd", status)) == missing
    assert refusal(await request(nc, f"{API}.get.executor.us-lnd", get)) == ("forbidden", "subject")
    assert refusal(await request(nc, f"{API}.get.caller.mallory", get)) == ("forbidden", "subject")
    assert refusal(await request(nc, f"{API}.get.alice", get)) == ("bad_subject", "subject")
    # The bare subjects are the engine's own (only the engine role may publish on them).
    assert (await request(nc, f"{API}.get", get))["ok"]

    # The same rule when the log answers, not the cache (a fresh engine, same database).
    other = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url,
                            credentials=IndexedRegistry(REGISTRY))  # fmt: skip
    await other.start(relay=False, intake=False)
    try:
        processor = other.processor
        bob = Principal(role="caller", id="bob")
        assert not (await processor.status(intent_id, reader=bob)).ok
        assert not (await processor.view(intent_id, reader=bob)).ok
        node = Principal(role="executor", id="us-lnd")
        assert (await processor.status(intent_id, reader=node)).ok
        assert not (await processor.view(intent_id, reader=node)).ok
        assert (await processor.view(intent_id, reader=Principal(role="caller", id="alice"))).ok
    finally:
        await other.stop()


async def test_the_engine_follows_the_registry_file(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    path = tmp_path / "credentials.json"
    save_registry(path, REGISTRY)
    engine = await _engine(nats_url, database_url, RegistryFile(path, check_interval_s=0.05))
    try:
        assert (await request(nc, f"{API}.submit.alice", submit(key="before")))["ok"]
        save_registry(path, REGISTRY.with_revoked("caller", "alice"))

        async def alice_refused() -> bool:
            reply = await request(nc, f"{API}.submit.alice", submit(key="after"))
            return reply.get("error", {}).get("code") == "forbidden"

        await wait_for(alice_refused, what="the revocation to apply")
    finally:
        await engine.stop()
