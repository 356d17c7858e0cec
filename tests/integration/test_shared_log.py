"""Two command processors on one log, in one process: each step of "many engines, one truth"
(ADR 0073) in a fixed order, where ``test_many_engines.py`` races three real processes.

Engine A and engine B share the database and nothing else, as two engine processes do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from schemas import events as ev
from schemas.codec import decode_request
from schemas.common import Caller
from schemas.records import EventMetadata
from schemas.replies import (
    CommandAccepted,
    PaymentIntentStatus,
    PolicyCommandAccepted,
    PolicyView,
)
from services.bootstrap import corridor_table
from services.domain.policy import PolicyEngine, WindowLimit
from services.domain.routing import OrderedRouter
from services.engine.clock import RandomIds, SystemClock
from services.engine.event_codec import to_new_events
from services.engine.processor import CommandEnvelope, CommandProcessor, Reply
from services.engine.spend_sync import SpendSync
from services.eventstore.postgres import PostgresEventStore
from services.policy.loader import load_default_policy
from services.settings import DEFAULT_CORRIDORS
from tests.factories import invoice, submit

BUDGET_MSAT = 20_000_000  # the default policy's agents, per hour
AMOUNT_MSAT = 900_000
FEE_MSAT = 10_000
FITS = BUDGET_MSAT // (AMOUNT_MSAT + FEE_MSAT)


class Engine:
    def __init__(self, store: PostgresEventStore) -> None:
        document = load_default_policy()
        default = PolicyEngine(document)
        table = corridor_table(DEFAULT_CORRIDORS)
        self.processor = CommandProcessor(
            store, clock=SystemClock(), ids=RandomIds(), policy=lambda: default,
            router=lambda: OrderedRouter(table), network="regtest",
            baseline_policy_version=document.version,
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.processor.load_policy_state()
        await self.processor.load_spend()
        self._task = asyncio.create_task(self.processor.run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    async def send(self, body: dict[str, Any]) -> Reply:
        command = decode_request(json.dumps(body).encode())
        return await self.processor.execute(CommandEnvelope(command=command))

    async def state(self, body: dict[str, Any]) -> str:
        reply = await self.send(body)
        assert isinstance(reply, CommandAccepted), reply
        return reply.state


@pytest.fixture
async def engines(store: PostgresEventStore) -> AsyncIterator[tuple[Engine, Engine]]:
    pair = (Engine(store), Engine(store))
    for engine in pair:
        await engine.start()
    yield pair
    for engine in pair:
        await engine.stop()


def _agent(key: str) -> dict[str, Any]:
    return submit(key=key, caller_id="bot", kind="agent", amount_msat=AMOUNT_MSAT,
                  max_fee_msat=FEE_MSAT)  # fmt: skip


async def test_an_engine_judges_with_the_reservations_another_engine_made(
    engines: tuple[Engine, Engine],
) -> None:
    a, b = engines
    await a.state(_agent("warm-b"))  # B has folded nothing of this caller since it started
    for i in range(FITS - 1):
        assert await a.state(_agent(f"a-{i}")) == "dispatched"
    assert await b.state(_agent("over")) == "awaiting_approval"
    assert await a.state(_agent("over-a")) == "awaiting_approval"


async def test_an_outcome_settles_an_intent_another_engine_reserved(
    engines: tuple[Engine, Engine],
) -> None:
    a, b = engines
    bolt11, payment_hash, preimage = invoice(amount_msat=AMOUNT_MSAT, label="other")
    paid = _agent("paid") | {"payment_request": bolt11}
    del paid["destination"]
    reply = await a.send(paid)
    assert isinstance(reply, CommandAccepted) and reply.state == "dispatched", reply
    outcome = {
        "type": "RecordPaymentOutcome", "version": 1, "intent_id": reply.intent_id,
        "attempt": 1, "outcome": "succeeded", "region": "us", "node": "us-lnd",
        "payment_hash": payment_hash, "preimage": preimage, "fee_msat": 12,
    }  # fmt: skip
    assert await b.state(outcome) == "settled"
    # Engine A cached the intent as dispatched; what it answers now is the log's state.
    status = await a.processor.status(reply.intent_id)
    assert isinstance(status, PaymentIntentStatus) and status.state == "settled", status
    # Both books count the settlement (amount plus fee) once and the reservation no more.
    for i in range(FITS - 1):
        assert await b.state(_agent(f"b-{i}")) == "dispatched", i
    assert await a.state(_agent("over")) == "awaiting_approval"


def _document_v2() -> dict[str, Any]:
    document = msgspec.to_builtins(load_default_policy())
    document["version"] = 2
    document["autonomy"]["levels"]["supervised"]["auto_max_msat"] = 100_000
    return document


async def test_a_policy_activated_through_one_engine_is_in_force_on_the_other(
    engines: tuple[Engine, Engine],
) -> None:
    a, b = engines
    assert await b.state(_agent("v1")) == "dispatched"
    propose = {"type": "ProposePolicy", "version": 1, "policy_version": 2,
               "document": _document_v2(), "proposer_id": "op-a"}  # fmt: skip
    assert isinstance(await a.send(propose), PolicyCommandAccepted)
    # B approves what A recorded.
    approve = {"type": "ApprovePolicy", "version": 1, "policy_version": 2, "approver_id": "op-b"}
    approved = await b.send(approve)
    assert isinstance(approved, PolicyCommandAccepted) and approved.active_version == 2, approved
    # A never saw the activation, yet shows it in force and judges with it.
    view = await a.processor.current_policy_view()
    assert isinstance(view, PolicyView) and view.policy_version == 2, view
    reply = await a.send(_agent("v2"))
    assert isinstance(reply, CommandAccepted) and reply.state != "dispatched", reply
    assert a.processor.active_policy_version == 2


async def test_a_catch_up_folds_each_other_writers_event_once(store: PostgresEventStore) -> None:
    meta = EventMetadata(correlation_id="c", causation_id="k", actor="test")

    def reserved(intent_id: str) -> list[Any]:
        received = ev.IntentReceived(
            intent_id=intent_id, caller=Caller(id="bot", kind="agent"), idempotency_key=intent_id,
            corridor="us-eu", amount_msat=AMOUNT_MSAT, max_fee_msat=FEE_MSAT,
            destination="02" + "11" * 32, received_at_ms=0, request_fingerprint="f",
        )  # fmt: skip
        checked = ev.IntentPolicyChecked(tier="auto", policy_version=1)
        return to_new_events(intent_id, 1, [received, checked], meta, 1_700_000_000_000)

    sync = SpendSync()
    await store.append(reserved("elsewhere"))
    assert await sync.catch_up(store) == 2
    assert await sync.catch_up(store) == 0
    own = reserved("here")
    first = await store.append(own)
    assert first is not None
    sync.appended(first, len(own), ["bot"])  # as the writer loop reports its own batch
    assert await sync.catch_up(store) == 0
    [use] = sync.tracker.window_uses("bot", [WindowLimit(3_600_000, 10**9)], now_ms=1)
    assert use.used_msat == AMOUNT_MSAT + FEE_MSAT  # "here" was never folded into this book


async def test_an_engine_that_dispatched_attempt_one_reports_the_attempt_another_made(
    engines: tuple[Engine, Engine],
) -> None:
    a, b = engines
    bolt11, payment_hash, _ = invoice(amount_msat=60_000, label="reroute")
    body = submit(key="reroute", payment_request=bolt11, destination=None, amount_msat=60_000)
    reply = await a.send(body)
    assert isinstance(reply, CommandAccepted) and reply.state == "dispatched", reply
    failed = {
        "type": "RecordPaymentOutcome", "version": 1, "intent_id": reply.intent_id,
        "attempt": 1, "outcome": "failed", "region": "us", "node": "us-lnd",
        "payment_hash": payment_hash, "failure_reason": "no_route", "confirmed_not_paid": True,
    }  # fmt: skip
    assert await b.state(failed) == "dispatched"  # attempt 2, on the next candidate
    # What an executor asking engine A whether attempt 2 is current hears (ADR 0074).
    assert a.processor.cached_status(reply.intent_id) is None
    status = await a.processor.status(reply.intent_id)
    assert isinstance(status, PaymentIntentStatus) and status.attempt == 2, status
