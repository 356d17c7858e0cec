"""The LSP order service layer on the in-process adapter and the in-memory event store, with a
manual clock: an LSP that cannot be reached or never answers fails the order unpaid after its
answer deadline, create_order is sent at most once per process, and a quote over budget is
abandoned without a payment. Payments go through a twin of the engine's intents that counts
what it was asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from schemas import lsp_messages as lm
from schemas.common import Caller
from services.eventstore.memory import InMemoryEventStore
from services.lightning.sim_direct import SimNodeAdapter
from services.lsps.client import LspsClient
from services.lsps.orders import ANSWER_WINDOW_MS, IntentOutcome, LspOrders
from services.sim.lsp import LspOptions, SimLsp
from services.sim.network import SimNetwork
from services.sim.topology import ChannelSpec, NodeSpec, Topology

START_S = 1_760_000_000.0
CALLER = Caller(id="operator-1", kind="human")


@dataclass
class IntentsTwin:
    asked: list[str] = field(default_factory=list)

    async def pay(self, *, key: str, invoice: str, amount_msat: int, max_fee_msat: int) -> str:
        self.asked.append(key)
        return "intent-" + key

    async def outcome(self, intent_id: str) -> IntentOutcome | None:
        return None


@dataclass
class Flow:
    network: SimNetwork
    orders: LspOrders
    intents: IntentsTwin
    clock: list[float]
    lsp_pubkey: str


@pytest.fixture
async def flow() -> AsyncIterator[Flow]:
    clock = [START_S]
    topology = Topology(
        nodes=(
            NodeSpec(name="alice", role="ours", region="us"),
            NodeSpec(name="lsp", role="lsp"),
        ),
        channels=(ChannelSpec(a="alice", b="lsp", capacity_msat=10_000_000_000),),
    )
    network = SimNetwork.from_topology(topology, seed=3, now_s=lambda: clock[0])
    alice = SimNodeAdapter(network, "alice")
    intents = IntentsTwin()
    async with LspsClient(alice) as client:
        orders = LspOrders(
            store=InMemoryEventStore(), node=alice, lsps=client, intents=intents, caller=CALLER,
            timeout_s=0.2, now_ms=lambda: int(clock[0] * 1000),
        )  # fmt: skip
        yield Flow(network, orders, intents, clock, network.node("lsp").pubkey)
    await alice.close()
    await network.aclose()


def order(flow: Flow, key: str, **changes: int) -> lm.OrderLspChannel:
    fields = {"lsp_balance_msat": 1_000_000_000, "max_fee_msat": 5_000_000, **changes}
    return lm.OrderLspChannel(
        idempotency_key=key, region="us", node="alice", lsp_pubkey=flow.lsp_pubkey, **fields
    )


@pytest.mark.parametrize("lsp_state", ["offline", "silent"])
async def test_an_lsp_that_never_answers_fails_the_order_unpaid_at_the_deadline(
    flow: Flow, lsp_state: str
) -> None:
    if lsp_state == "offline":
        flow.network.faults.set_offline("lsp", offline=True)
    state = await flow.orders.order(order(flow, "k1"))
    for _ in range(2):
        assert (await flow.orders.step(state.lsp_order_id)).status == "requested"
    flow.clock[0] += ANSWER_WINDOW_MS / 1000
    done = await flow.orders.step(state.lsp_order_id)
    assert (done.status, done.outcome) == ("failed", "lsp_no_answer")
    assert flow.intents.asked == []


async def test_create_order_is_sent_once_and_a_late_lsp_changes_nothing(flow: Flow) -> None:
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    try:
        state = await flow.orders.order(order(flow, "k2"))
        # The LSP answers create_order, but too late for this step's deadline: simulated by
        # asking, then dropping the answer (a second step must not ask again).
        flow.orders._asked.add(state.lsp_order_id)
        assert (await flow.orders.step(state.lsp_order_id)).status == "requested"
        assert lsp.orders == {}
    finally:
        await lsp.stop()


async def test_a_quote_over_budget_is_abandoned_and_never_paid(flow: Flow) -> None:
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    try:
        state = await flow.orders.order(order(flow, "k3", max_fee_msat=1_000))
        done = await flow.orders.step(state.lsp_order_id)
        assert (done.status, done.outcome) == ("abandoned", "fee_over_budget")
        assert flow.intents.asked == [] and len(lsp.orders) == 1
    finally:
        await lsp.stop()


async def test_a_paying_order_submits_its_one_key_on_every_step(flow: Flow) -> None:
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    try:
        state = await flow.orders.order(order(flow, "k4"))
        for _ in range(3):
            state = await flow.orders.step(state.lsp_order_id)
        assert state.status == "paying"
        assert set(flow.intents.asked) == {f"lsp-order:{state.lsp_order_id}"}
    finally:
        await lsp.stop()


async def test_two_runners_of_one_order_record_one_remote_order_and_pay_one_key(
    flow: Flow,
) -> None:
    """Two processes step the same order (a CLI and a restarted one): both may ask the LSP,
    which then holds two orders, but the log takes the first answer and refuses the second,
    and only the recorded one is paid, under the order's one key."""
    lsp = SimLsp(flow.network, "lsp", options=LspOptions(min_initial_lsp_balance_sat=1))
    await lsp.start()
    alice = SimNodeAdapter(flow.network, "alice")
    try:
        async with LspsClient(alice) as client:
            other = LspOrders(
                store=flow.orders._store, node=alice, lsps=client, intents=flow.intents,
                caller=CALLER, timeout_s=0.2, now_ms=lambda: int(flow.clock[0] * 1000),
            )  # fmt: skip
            state = await flow.orders.order(order(flow, "k5"))
            first, second = await asyncio.gather(
                flow.orders.step(state.lsp_order_id), other.step(state.lsp_order_id)
            )
            for _ in range(2):
                await other.step(state.lsp_order_id)
        recorded = await flow.orders.state(state.lsp_order_id)
        assert recorded is not None and recorded.status == "paying"
        assert recorded in (first, second)
        assert len(lsp.orders) == 2  # the LSP made two; one is ours in the log
        assert recorded.remote_order_id in lsp.orders
        assert set(flow.intents.asked) == {f"lsp-order:{state.lsp_order_id}"}
    finally:
        await alice.close()
        await lsp.stop()
