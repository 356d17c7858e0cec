"""LSP orders decided by the engine's writer (ADR 0252): the aggregate of ADR 0251 behind the
planner, identity from the principal the intake authenticated, the request signed as the
work order of the node that gets the channel, reports only from that node's executor."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas import lsp_messages as lm
from schemas.replies import CommandAccepted, CommandRejected
from services.bootstrap import corridor_table
from services.domain.lsp_orders import replay
from services.domain.policy import PolicyEngine
from services.domain.principal import Principal
from services.domain.routing import OrderedRouter
from services.engine.clock import RandomIds, SystemClock
from services.engine.event_codec import to_domain
from services.engine.processor import CommandEnvelope, CommandProcessor, Reply
from services.eventstore.memory import InMemoryEventStore
from services.policy.loader import load_default_policy
from services.settings import DEFAULT_CORRIDORS
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.signing.lsp_orders import verify_lsp_order
from services.signing.port import BadSignature

LSP_PUBKEY = "02" + "11" * 32
OPERATOR = Principal(role="operator", id="olivia")
EXECUTOR = Principal(role="executor", id="us-lnd")
OTHER_EXECUTOR = Principal(role="executor", id="eu-lnd")
SIGNER = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"lsp").digest()))


def order(key: str = "k1", **changes: object) -> lm.OrderLspChannel:
    fields: dict[str, object] = {
        "idempotency_key": key, "region": "us", "node": "us-lnd", "lsp_pubkey": LSP_PUBKEY,
        "lsp_balance_msat": 2_000_000_000, "max_fee_msat": 50_000_000, "corridor": "us-eu",
    }  # fmt: skip
    fields.update(changes)
    return msgspec.convert(fields, lm.OrderLspChannel)


class Engine:
    def __init__(self) -> None:
        self.store = InMemoryEventStore()
        document = load_default_policy()
        default = PolicyEngine(document)
        self.processor = CommandProcessor(
            self.store, clock=SystemClock(), ids=RandomIds(), policy=lambda: default,
            router=lambda: OrderedRouter(corridor_table(DEFAULT_CORRIDORS)), network="regtest",
            baseline_policy_version=document.version, signer=SIGNER,
        )  # fmt: skip

    async def send(self, command: object, principal: Principal | None) -> Reply:
        envelope = CommandEnvelope(command=command, principal=principal)  # type: ignore[arg-type]
        return await self.processor.execute(envelope)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    import asyncio

    made = Engine()
    await made.processor.load_policy_state()
    task = asyncio.create_task(made.processor.run())
    yield made
    task.cancel()


def _ok(reply: Reply) -> CommandAccepted:
    assert isinstance(reply, CommandAccepted), reply
    return reply


def _code(reply: Reply) -> str:
    assert isinstance(reply, CommandRejected), reply
    return reply.error.code


def created(order_id: str, **changes: object) -> lm.RecordLspOrderReport:
    fields: dict[str, object] = {
        "lsp_order_id": order_id, "stage": "created", "remote_order_id": "remote-1",
        "invoice": "lnbcrt1invoice", "invoice_amount_msat": 20_000_000,
        "invoice_payee": LSP_PUBKEY, "fee_total_msat": 20_000_000,
        "order_total_msat": 20_000_000, "expires_at_s": 4_000_000_000,
    }  # fmt: skip
    fields.update(changes)
    return msgspec.convert(fields, lm.RecordLspOrderReport)


async def test_an_operators_order_is_recorded_once_and_signed_for_its_node(engine: Engine) -> None:
    first = _ok(await engine.send(order(), OPERATOR))
    again = _ok(await engine.send(order(), OPERATOR))
    assert first.state == "requested" and not first.duplicate
    assert again.intent_id == first.intent_id and again.duplicate
    assert _code(await engine.send(order(max_fee_msat=1), OPERATOR)) == "idempotency_key_reused"
    stored = await engine.store.read_stream(first.intent_id)
    assert len(stored) == 1
    requested = to_domain(stored[0])
    assert isinstance(requested, lm.LspOrderRequested)
    assert requested.caller.id == "olivia" and requested.corridor == "us-eu"
    keyring = Ed25519Keyring([SIGNER.public_key])
    verify_lsp_order(keyring, lsp_order_id=first.intent_id, event_id=stored[0].event_id,
                     order=requested)  # fmt: skip
    forged = msgspec.structs.replace(requested, node="eu-lnd")
    with pytest.raises(BadSignature):
        verify_lsp_order(keyring, lsp_order_id=first.intent_id, event_id=stored[0].event_id,
                         order=forged)  # fmt: skip


async def test_who_may_order(engine: Engine) -> None:
    assert _code(await engine.send(order(), EXECUTOR)) == "forbidden"
    assert _code(await engine.send(order(corridor=None), OPERATOR)) == "missing_corridor"
    service = Principal(role="caller", id="alice")
    accepted = _ok(await engine.send(order(), service))
    state = replay(to_domain(e) for e in await engine.store.read_stream(accepted.intent_id))
    assert state is not None and state.caller.id == "alice" and state.caller.kind == "service"
    # Same key, other caller: another order (the stream is of the caller and the key).
    assert _ok(await engine.send(order(), OPERATOR)).intent_id != accepted.intent_id


async def test_reports_come_from_the_orders_own_executor(engine: Engine) -> None:
    order_id = _ok(await engine.send(order(), OPERATOR)).intent_id
    assert _code(await engine.send(created(order_id), OTHER_EXECUTOR)) == "unknown_order"
    assert _code(await engine.send(created(order_id), OPERATOR)) == "unknown_order"
    paying = _ok(await engine.send(created(order_id), EXECUTOR))
    assert paying.state == "paying"
    # A second remote order (an executor restarted and asked again) is refused.
    second = created(order_id, remote_order_id="remote-2")
    assert _code(await engine.send(second, EXECUTOR)) == "conflicting_order"
    # The engine's own report of the payment (principal None), then the LSP's completion.
    paid = lm.RecordLspOrderReport(lsp_order_id=order_id, stage="paid", payment_intent_id="i-1")
    assert _ok(await engine.send(paid, None)).state == "paid"
    done = lm.RecordLspOrderReport(
        lsp_order_id=order_id, stage="status", order_state="COMPLETED", payment_state="PAID",
        funding_outpoint="ab" * 32 + ":0",
    )  # fmt: skip
    assert _ok(await engine.send(done, EXECUTOR)).state == "completed"
    assert _ok(await engine.send(done, EXECUTOR)).duplicate


async def test_a_quote_over_the_fee_budget_is_abandoned_unpaid(engine: Engine) -> None:
    order_id = _ok(await engine.send(order(max_fee_msat=1_000), OPERATOR)).intent_id
    reply = _ok(await engine.send(created(order_id), EXECUTOR))
    assert reply.state == "abandoned" and reply.reason == "fee_over_budget"


async def test_only_the_orders_executor_drives_its_payment(engine: Engine) -> None:
    """The engine submits the order's one intent when the order's own executor reports on a
    paying order; another node's report (were NATS to let it through) submits nothing."""
    from services.engine.ids import intent_id_for
    from services.engine.lsp_order_payments import before_report
    from tests.factories import invoice

    bolt11, _, _ = invoice(amount_msat=20_000_000, label="lsp")
    order_id = _ok(await engine.send(order(max_routing_fee_msat=1_000), OPERATOR)).intent_id
    reported = created(order_id, invoice=bolt11)
    assert _ok(await engine.send(reported, EXECUTOR)).state == "paying"
    status = lm.RecordLspOrderReport(
        lsp_order_id=order_id, stage="status", order_state="CREATED",
        payment_state="EXPECT_PAYMENT",
    )  # fmt: skip
    intent_id = intent_id_for("olivia", lm.payment_key_of(order_id))
    assert await before_report(engine.processor, status, OTHER_EXECUTOR) is None
    assert await engine.store.read_stream(intent_id) == []
    for _ in range(2):  # the same request each time: one intent
        await before_report(engine.processor, status, EXECUTOR)
    stored = await engine.store.read_stream(intent_id)
    assert [e.type for e in stored].count("IntentReceived") == 1
    assert stored[0].payload["idempotency_key"] == lm.payment_key_of(order_id)
    assert stored[0].payload["caller"] == {"id": "olivia", "kind": "human"}
