"""LSP orders on the in-process adapter with a manual clock (ADR 0252): the executor's LSP
worker (``services/executor/lsp_worker.py``) steps one order round by round against the
engine's planner on the in-memory event store, reading and reporting through the same
functions the engine's intake uses (``lsp_order_view``, ``before_report``).

An LSP that cannot be reached or never answers fails the order unpaid after its answer
deadline, create_order is sent at most once per process and never again once the log has the
LSP's order, a quote over budget is abandoned without a payment, and a paying order has one
payment intent under its one key however often it is reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from schemas import lsp_messages as lm
from schemas.replies import CommandAccepted, PaymentIntentView
from services.bootstrap import corridor_table
from services.domain.lsp_orders import LspOrder, replay
from services.domain.policy import PolicyEngine
from services.domain.principal import Principal
from services.domain.routing import OrderedRouter
from services.engine.clock import RandomIds
from services.engine.event_codec import to_domain
from services.engine.ids import intent_id_for
from services.engine.lsp_order_payments import before_report
from services.engine.lsp_order_planning import ANSWER_WINDOW_MS
from services.engine.processor import CommandEnvelope, CommandProcessor
from services.eventstore.memory import InMemoryEventStore
from services.executor.errors import OutcomeRefused
from services.executor.lsp_worker import LspOrders, LspWorkOrder
from services.intake.lsp_orders import lsp_order_view
from services.lightning.sim_direct import SimNodeAdapter
from services.lsps.client import LspsClient
from services.lsps.lsps1 import Lsps1Client
from services.policy.loader import load_default_policy
from services.settings import DEFAULT_CORRIDORS
from services.signing.ed25519 import Ed25519Keyring
from services.sim.lsp import LspOptions, SimLsp
from services.sim.network import SimNetwork
from services.sim.topology import ChannelSpec, NodeSpec, Topology

START_S = 1_760_000_000.0
OPERATOR = Principal(role="operator", id="operator-1")
EXECUTOR = Principal(role="executor", id="alice")


class ManualClock:
    def __init__(self) -> None:
        self.now_s = START_S

    def now_ms(self) -> int:
        return int(self.now_s * 1000)

    def monotonic(self) -> float:
        return self.now_s


@dataclass
class Flow:
    network: SimNetwork
    engine: CommandProcessor
    store: InMemoryEventStore
    clock: ManualClock
    lsp_pubkey: str
    alice: SimNodeAdapter

    def worker(self) -> LspOrders:
        """A fresh executor process's worker (it remembers nothing it asked before)."""

        async def read(order_id: str) -> list[object]:
            view = await lsp_order_view(self.engine, order_id, EXECUTOR)
            assert isinstance(view, PaymentIntentView), view
            return list(view.events)

        async def report(r: lm.RecordLspOrderReport, causation: str, correlation: str) -> None:
            waiting = await before_report(self.engine, r, EXECUTOR)
            if waiting is not None:
                raise OutcomeRefused(waiting.code, str(waiting))
            reply = await self.engine.execute(CommandEnvelope(command=r, principal=EXECUTOR))
            if not isinstance(reply, CommandAccepted):
                raise OutcomeRefused(reply.error.code, reply.error.message)  # type: ignore[union-attr]

        return LspOrders(
            self.alice, region="us", node_name="alice", verifier=Ed25519Keyring(),
            read=read, report=report, heartbeat_s=60, call_timeout_s=0.2,  # type: ignore[arg-type]
            now_ms=self.clock.now_ms,
        )  # fmt: skip

    async def order(self, key: str, **changes: object) -> LspWorkOrder:
        fields: dict[str, object] = {
            "lsp_balance_msat": 1_000_000_000, "max_fee_msat": 5_000_000, "node": "alice",
            # Within the default policy's fee cap for the LSP's fee, so the intent is paid.
            "max_routing_fee_msat": 1_000, **changes,
        }  # fmt: skip
        command = lm.OrderLspChannel(
            idempotency_key=key, region="us", lsp_pubkey=self.lsp_pubkey, corridor="us-eu",
            **fields,  # type: ignore[arg-type]
        )  # fmt: skip
        reply = await self.engine.execute(CommandEnvelope(command=command, principal=OPERATOR))
        assert isinstance(reply, CommandAccepted), reply
        [first, *_] = await self.store.read_stream(reply.intent_id)
        requested = to_domain(first)
        assert isinstance(requested, lm.LspOrderRequested)
        return LspWorkOrder(
            lsp_order_id=reply.intent_id, event_id=first.event_id,
            correlation_id=reply.intent_id, order=requested,
        )  # fmt: skip

    async def state(self, order_id: str) -> LspOrder:
        state = replay(to_domain(e) for e in await self.store.read_stream(order_id))
        assert state is not None
        return state

    async def intents_of(self, order_id: str) -> list[str]:
        """The payment intents' streams submitted for the order (its one key's, or none)."""
        intent_id = intent_id_for(OPERATOR.id, lm.payment_key_of(order_id))
        return [e.type for e in await self.store.read_stream(intent_id)]


@pytest.fixture
async def flow() -> AsyncIterator[Flow]:
    clock = ManualClock()
    topology = Topology(
        nodes=(
            NodeSpec(name="alice", role="ours", region="us"),
            NodeSpec(name="lsp", role="lsp"),
        ),
        channels=(ChannelSpec(a="alice", b="lsp", capacity_msat=10_000_000_000),),
    )
    network = SimNetwork.from_topology(topology, seed=3, now_s=lambda: clock.now_s)
    store = InMemoryEventStore(now_ms=clock.now_ms)
    document = load_default_policy()
    default = PolicyEngine(document)
    engine = CommandProcessor(
        store, clock=clock, ids=RandomIds(), policy=lambda: default,
        router=lambda: OrderedRouter(corridor_table(DEFAULT_CORRIDORS)), network="regtest",
        baseline_policy_version=document.version,
    )  # fmt: skip
    await engine.load_policy_state()
    task = asyncio.create_task(engine.run())
    alice = SimNodeAdapter(network, "alice")
    yield Flow(network, engine, store, clock, network.node("lsp").pubkey, alice)
    task.cancel()
    await alice.close()
    await network.aclose()


async def rounds(flow: Flow, worker: LspOrders, work: LspWorkOrder, n: int) -> LspOrder:
    async with LspsClient(flow.alice) as lsps:
        lsps1 = Lsps1Client(lsps, flow.alice, timeout_s=0.2)
        for _ in range(n):
            await worker.round(work, lsps, lsps1)
    return await flow.state(work.lsp_order_id)


@pytest.mark.parametrize("lsp_state", ["offline", "silent"])
async def test_an_lsp_that_never_answers_fails_the_order_unpaid_at_the_deadline(
    flow: Flow, lsp_state: str
) -> None:
    if lsp_state == "offline":
        flow.network.faults.set_offline("lsp", offline=True)
    work = await flow.order("k1")
    worker = flow.worker()
    assert (await rounds(flow, worker, work, 2)).status == "requested"
    flow.clock.now_s += ANSWER_WINDOW_MS / 1000
    done = await rounds(flow, worker, work, 1)
    assert (done.status, done.outcome) == ("failed", "lsp_no_answer")
    assert await flow.intents_of(work.lsp_order_id) == []


async def test_create_order_is_sent_once_per_process(flow: Flow) -> None:
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    try:
        work = await flow.order("k2")
        worker = flow.worker()
        # This process asked already (its answer was lost): it never asks again.
        worker._asked.add(work.lsp_order_id)
        assert (await rounds(flow, worker, work, 2)).status == "requested"
        assert lsp.orders == {}
    finally:
        await lsp.stop()


async def test_a_quote_over_budget_is_abandoned_and_never_paid(flow: Flow) -> None:
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    try:
        work = await flow.order("k3", max_fee_msat=1_000)
        done = await rounds(flow, flow.worker(), work, 1)
        assert (done.status, done.outcome) == ("abandoned", "fee_over_budget")
        assert await flow.intents_of(work.lsp_order_id) == [] and len(lsp.orders) == 1
    finally:
        await lsp.stop()


async def test_a_paying_order_has_one_intent_however_often_it_is_reported(flow: Flow) -> None:
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    try:
        work = await flow.order("k4")
        state = await rounds(flow, flow.worker(), work, 4)
        assert state.status == "paying", (state, await flow.intents_of(work.lsp_order_id))
        intent = await flow.intents_of(work.lsp_order_id)
        assert intent.count("IntentReceived") == 1, intent
    finally:
        await lsp.stop()


async def test_a_restarted_worker_follows_the_recorded_order_and_never_orders_again(
    flow: Flow,
) -> None:
    """The first process's answer is in the log; a second process (a restart) reads it and
    only asks get_order: the LSP holds one order."""
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    try:
        work = await flow.order("k5")
        first = await rounds(flow, flow.worker(), work, 1)
        assert first.status == "paying", (first, await flow.intents_of(work.lsp_order_id))
        assert first.remote_order_id in lsp.orders
        again = await rounds(flow, flow.worker(), work, 3)
        assert again.remote_order_id == first.remote_order_id and len(lsp.orders) == 1
        intent = await flow.intents_of(work.lsp_order_id)
        assert intent.count("IntentReceived") == 1, intent
    finally:
        await lsp.stop()


async def test_an_order_left_unpaid_expires_failed(flow: Flow) -> None:
    """No executor pays the intent here: past the invoice's expiry the LSP fails the unpaid
    order, and the worker's next report ends it."""
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    try:
        work = await flow.order("k6")
        worker = flow.worker()
        assert (await rounds(flow, worker, work, 1)).status == "paying"
        flow.clock.now_s += 4000
        done = await rounds(flow, worker, work, 1)
        assert (done.status, done.outcome) == ("failed", "expired_unpaid")
    finally:
        await lsp.stop()
