"""Channel operations as intents through the real engine (ADR 0234): an operator's request
over NATS, the engine's decision and signed order in PostgreSQL, the relay's dispatch, the
region executor on the simulated lnd (over its gRPC API), and its reports back.

The simulated chain is the ground truth: its funding transactions are counted where the money
moves, so "never opens twice" is not checked in our own records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from schemas.channel_messages import FUNDING_TX_VSIZE
from schemas.rebalance_messages import budget_day, budget_stream_id
from services.bootstrap import Engine, bootstrap
from services.executor import Executor
from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
from services.executor.nodes import adapter_for, resolve_node
from services.lightning.port import ChannelOpening, NodePort
from services.settings import Settings
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
from services.sim.channel_ops import FUNDING_CONFIRMATIONS
from services.sim.cln_server import start_cln_node_server
from tests.conftest import wait_for
from tests.integration.test_executor import FAST, SimStack, signing_engine, sim_stack

OPERATOR = "ops-1"
PEER = "hub-us"
AMOUNT_MSAT = 1_000_000_000  # 1M sat
RATE = 5  # sat/vB
FEE_MSAT = RATE * FUNDING_TX_VSIZE * 1000
OPEN_TIMEOUT_S = 20.0


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with signing_engine(nats_url, database_url, tmp_path) as running:
        yield running


@pytest.fixture
async def sim(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    async with sim_stack(tmp_path, nats_url) as stack:
        yield stack


def open_command(sim: SimStack, key: str, *, max_fee_msat: int = 10 * FEE_MSAT) -> dict[str, Any]:
    return {
        "type": "OpenChannel", "version": 1, "idempotency_key": key, "region": "us",
        "node": "us-lnd", "peer_pubkey": sim.network.node(PEER).pubkey,
        "local_amount_msat": AMOUNT_MSAT, "sat_per_vbyte": RATE,
        "max_onchain_fee_msat": max_fee_msat,
    }  # fmt: skip


async def request(nc: Client, verb: str, command: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(
        f"corridor.api.v1.intents.{verb}.{OPERATOR}", json.dumps(command).encode(), timeout=10
    )
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def state_is(engine: Engine, op_id: str, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        view = await engine.processor.view(op_id)
        return getattr(view, "state", None) == state

    return check


async def event_types(engine: Engine, op_id: str) -> list[str]:
    return [e.type for e in await engine.store.read_stream(op_id)]


def funding_txs(sim: SimStack) -> list[str]:
    return [tx.txid for tx in sim.network.chain.txs.values() if tx.kind == "funding"]


async def test_open_pending_mined_opened_and_the_same_key_is_the_same_intent(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    wallet_before = sim.network.wallet_of("us-lnd")
    sim.start("us", "us-lnd", "us-1")
    reply = await request(nc, "channel_open", open_command(sim, "open-1"))
    assert reply["ok"] and reply["state"] == "requested", reply
    op_id = reply["intent_id"]
    await wait_for(state_is(engine, op_id, "broadcast"), what="the funding broadcast")
    (funding,) = funding_txs(sim)
    again = await request(nc, "channel_open", open_command(sim, "open-1"))
    assert (again["intent_id"], again["duplicate"]) == (op_id, True)
    sim.network.mine(FUNDING_CONFIRMATIONS)
    await wait_for(state_is(engine, op_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="open")
    assert await event_types(engine, op_id) == [
        "ChannelOpenRequested", "ChannelOpening", "ChannelOpened",
    ]  # fmt: skip
    history = await engine.store.read_stream(op_id)
    assert history[1].payload["funding_txid"] == funding
    assert history[2].payload["channel_id"]
    # The on-chain fee the budget was judged by is the fee the chain charged.
    assert history[0].payload["onchain_fee_msat"] == FEE_MSAT
    assert sim.network.chain.txs[funding].fee_sat * 1000 == FEE_MSAT
    wallet_after = sim.network.wallet_of("us-lnd")
    spent_msat = wallet_before.confirmed_msat - wallet_after.confirmed_msat
    assert wallet_after.unconfirmed_msat == 0
    assert spent_msat == AMOUNT_MSAT + FEE_MSAT
    # Another key with the same request is another channel.
    other = await request(nc, "channel_open", open_command(sim, "open-2"))
    assert other["intent_id"] != op_id


async def test_a_fee_over_budget_is_rejected_and_nothing_is_sent(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    sim.start("us", "us-lnd", "us-1")
    reply = await request(nc, "channel_open", open_command(sim, "dear", max_fee_msat=FEE_MSAT - 1))
    assert reply["ok"] and reply["state"] == "rejected" and reply["reason"] == "fee_over_budget"
    assert await event_types(engine, reply["intent_id"]) == ["ChannelOpRejected"]
    assert funding_txs(sim) == []


class _StallAfterOpen:
    """The node adapter of an executor that dies right after the node opened the channel,
    before its report reaches the engine: the open returns, the report never leaves."""

    def __init__(self, inner: NodePort, opened: asyncio.Event) -> None:
        self._inner = inner
        self._opened = opened

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open_channel(self, **kwargs: Any) -> ChannelOpening:
        await self._inner.open_channel(**kwargs)
        self._opened.set()
        await asyncio.Event().wait()  # the process is gone; only cancellation ends this
        raise AssertionError("unreachable")


async def test_an_executor_killed_between_open_and_report_opens_exactly_once(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    resolved = resolve_node("sim://us-lnd", region="us", state_dir=sim.state_dir)
    opened = asyncio.Event()
    doomed = Executor(
        nats_url=sim.nats_url, region="us", node_name=resolved.name,
        node=_StallAfterOpen(adapter_for(resolved.uri), opened),  # type: ignore[arg-type]
        executor_id="us-doomed", secret=load_or_create_secret(sim.state_dir / SECRET_FILE_NAME),
        limits=FAST, verifier=FileKeyring(keys_dir(sim.state_dir) / PUBLIC_KEYS_FILE),
    )  # fmt: skip
    task = asyncio.create_task(doomed.run())
    try:
        reply = await request(nc, "channel_open", open_command(sim, "crash"))
        op_id = reply["intent_id"]
        await wait_for(opened.is_set, what="the node to open the channel")
        assert await event_types(engine, op_id) == ["ChannelOpenRequested"]  # no report yet
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await doomed.close_node()
    (funding,) = funding_txs(sim)
    # One block confirms the change: the wallet could fund a second open, so only the node's
    # record (the memo) stands between the redelivery and a second funding transaction.
    sim.network.mine(1)
    sim.start("us", "us-lnd", "us-2")  # the order comes back to the next executor
    await wait_for(state_is(engine, op_id, "broadcast"), timeout_s=OPEN_TIMEOUT_S, what="found")
    sim.network.mine(FUNDING_CONFIRMATIONS)
    await wait_for(state_is(engine, op_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="open")
    assert funding_txs(sim) == [funding]  # ground truth: one funding transaction, ever
    history = await engine.store.read_stream(op_id)
    assert history[1].payload["funding_txid"] == funding


@contextlib.asynccontextmanager
async def with_cln_node(sim: SimStack, name: str = "us-cln") -> AsyncIterator[None]:
    """Serve our simulated CLN node ``name`` (JSON-RPC on a unix socket) beside the lnd ones,
    listed in the stack's endpoints.json for ``sim://`` resolution."""
    sockets = Path(tempfile.mkdtemp(prefix="cz", dir="/tmp"))  # AF_UNIX paths are short
    server = await start_cln_node_server(sim.network, name, socket_path=sockets / "n.sock")
    endpoints = sim.state_dir / "endpoints.json"
    listed = json.loads(endpoints.read_text())
    node = sim.network.node(name)
    listed["nodes"].append({
        "name": name, "role": node.role, "region": node.region, "implementation": "cln",
        "endpoint": server.endpoint, "pubkey": node.pubkey,
    })  # fmt: skip
    endpoints.write_text(json.dumps(listed))
    try:
        yield
    finally:
        for executor, task in sim.running:
            await sim.kill(executor, task)
        sim.running.clear()
        await server.stop()
        shutil.rmtree(sockets, ignore_errors=True)


async def test_a_cln_executor_killed_between_open_and_report_opens_exactly_once(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    """As above on Core Lightning, which keeps no memo: the open's record in its datastore,
    written before fundchannel, is what the redelivery finds (ADR 0235)."""
    async with with_cln_node(sim):
        resolved = resolve_node("sim://us-cln", region="us", state_dir=sim.state_dir)
        opened = asyncio.Event()
        doomed = Executor(
            nats_url=sim.nats_url, region="us", node_name=resolved.name,
            node=_StallAfterOpen(adapter_for(resolved.uri), opened),  # type: ignore[arg-type]
            executor_id="us-cln-doomed",
            secret=load_or_create_secret(sim.state_dir / SECRET_FILE_NAME),
            limits=FAST, verifier=FileKeyring(keys_dir(sim.state_dir) / PUBLIC_KEYS_FILE),
        )  # fmt: skip
        task = asyncio.create_task(doomed.run())
        try:
            command = {**open_command(sim, "cln-crash"), "node": "us-cln"}
            reply = await request(nc, "channel_open", command)
            assert reply["ok"] and reply["state"] == "requested", reply
            op_id = reply["intent_id"]
            await wait_for(opened.is_set, what="the node to open the channel")
            assert await event_types(engine, op_id) == ["ChannelOpenRequested"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await doomed.close_node()
        (funding,) = funding_txs(sim)
        sim.network.mine(1)  # the change confirms: the wallet could fund a second open
        sim.start("us", "us-cln", "us-cln-2")
        await wait_for(state_is(engine, op_id, "broadcast"), timeout_s=OPEN_TIMEOUT_S, what="found")
        sim.network.mine(FUNDING_CONFIRMATIONS)
        await wait_for(state_is(engine, op_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="open")
        assert funding_txs(sim) == [funding]  # ground truth: one funding transaction, ever
        history = await engine.store.read_stream(op_id)
        assert history[1].payload["funding_txid"] == funding


async def test_close_broadcast_mined_closed(engine: Engine, nc: Client, sim: SimStack) -> None:
    sim.start("us", "us-lnd", "us-1")
    op_id = (await request(nc, "channel_open", open_command(sim, "to-close")))["intent_id"]
    await wait_for(state_is(engine, op_id, "broadcast"), what="the funding broadcast")
    sim.network.mine(FUNDING_CONFIRMATIONS)
    await wait_for(state_is(engine, op_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="open")
    point = (await engine.store.read_stream(op_id))[1].payload["channel_point"]
    close = {
        "type": "CloseChannel", "version": 1, "idempotency_key": "close-1", "region": "us",
        "node": "us-lnd", "channel_point": point, "sat_per_vbyte": RATE,
        "max_onchain_fee_msat": 10 * FEE_MSAT,
    }  # fmt: skip
    reply = await request(nc, "channel_close", close)
    assert reply["ok"], reply
    close_id = reply["intent_id"]
    await wait_for(state_is(engine, close_id, "broadcast"), what="the closing broadcast")
    closing = (await engine.store.read_stream(close_id))[1].payload["closing_txid"]
    assert sim.network.chain.txs[closing].kind == "closing"
    sim.network.mine(1)
    await wait_for(state_is(engine, close_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="close")
    assert await event_types(engine, close_id) == [
        "ChannelCloseRequested", "ChannelClosing", "ChannelClosed",
    ]  # fmt: skip


async def test_only_the_named_nodes_executor_reports(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    op_id = (await request(nc, "channel_open", open_command(sim, "who")))["intent_id"]
    report = {
        "type": "RecordChannelOpReport", "version": 1, "op_id": op_id, "stage": "broadcast",
        "txid": "ab" * 32, "channel_point": "ab" * 32 + ":0",
    }  # fmt: skip
    for node in ("eu-lnd", "us-lnd"):
        msg = await nc.request(
            f"corridor.api.v1.intents.channel_report.{node}",
            json.dumps(report).encode(),
            timeout=10,
        )
        replies = json.loads(msg.data)
        if node == "eu-lnd":  # another node's executor: as if the operation did not exist
            assert not replies["ok"] and replies["error"]["code"] == "unknown_op", replies
        else:
            assert replies["ok"] and replies["state"] == "broadcast", replies
    assert await event_types(engine, op_id) == ["ChannelOpenRequested", "ChannelOpening"]


async def test_a_large_open_waits_for_a_second_operators_approval_then_opens(
    nats_url: str, database_url: str, nc: Client, sim: SimStack
) -> None:
    """ADR 0236: above the auto limit an open is recorded in tier approval and nothing is
    sent; the requester cannot approve it; another operator's approval is the order."""
    settings = Settings(
        relay_poll_s=0.2, state_dir=sim.state_dir, channel_open_auto_max_msat=AMOUNT_MSAT // 2
    )
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    try:
        await wait_for(engine.relay.leader.is_set, what="the relay to lead")
        sim.start("us", "us-lnd", "us-1")
        reply = await request(nc, "channel_open", open_command(sim, "big"))
        assert reply["ok"] and reply["state"] == "requested", reply
        op_id = reply["intent_id"]
        assert (await engine.store.read_stream(op_id))[0].payload["tier"] == "approval"

        async def approve(operator: str) -> dict[str, Any]:
            body = {"type": "ApprovePaymentIntent", "version": 1, "intent_id": op_id,
                    "operator_id": operator, "note": "wumbo for the hub"}  # fmt: skip
            msg = await nc.request(
                f"corridor.api.v1.intents.approve.{operator}", json.dumps(body).encode(), timeout=10
            )
            answer: dict[str, Any] = json.loads(msg.data)
            return answer

        own = await approve(OPERATOR)
        assert not own["ok"] and own["error"]["code"] == "two_person_rule", own
        # The executor saw the request (a notice) and sent nothing.
        assert funding_txs(sim) == []
        assert await event_types(engine, op_id) == ["ChannelOpenRequested"]
        approved = await approve("ops-2")
        assert approved["ok"] and approved["state"] == "requested", approved
        await wait_for(state_is(engine, op_id, "broadcast"), what="the approved open's funding")
        (funding,) = funding_txs(sim)
        sim.network.mine(FUNDING_CONFIRMATIONS)
        await wait_for(state_is(engine, op_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="open")
        history = await engine.store.read_stream(op_id)
        assert [e.type for e in history] == [
            "ChannelOpenRequested", "ChannelOpenApproved", "ChannelOpening", "ChannelOpened",
        ]  # fmt: skip
        assert history[1].payload["approved_by"] == "ops-2"
        assert history[2].payload["funding_txid"] == funding
    finally:
        await engine.stop()


async def test_a_close_redelivered_after_it_confirmed_completes_and_closes_nothing(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    """The executor dies after reporting the closing broadcast; the close confirms and the node
    forgets the channel before the order comes back. The engine's record of the broadcast is
    the proof: the redelivery reports the close final instead of dead-lettering it."""
    first = sim.start("us", "us-lnd", "us-1")
    op_id = (await request(nc, "channel_open", open_command(sim, "to-close-2")))["intent_id"]
    await wait_for(state_is(engine, op_id, "broadcast"), what="the funding broadcast")
    sim.network.mine(FUNDING_CONFIRMATIONS)
    await wait_for(state_is(engine, op_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="open")
    point = (await engine.store.read_stream(op_id))[1].payload["channel_point"]
    close = {
        "type": "CloseChannel", "version": 1, "idempotency_key": "close-2", "region": "us",
        "node": "us-lnd", "channel_point": point, "sat_per_vbyte": RATE,
        "max_onchain_fee_msat": 10 * FEE_MSAT,
    }  # fmt: skip
    close_id = (await request(nc, "channel_close", close))["intent_id"]
    await wait_for(state_is(engine, close_id, "broadcast"), what="the closing broadcast")
    await sim.kill(*first)  # before it saw the close confirm: the order stays unacked
    sim.running.remove(first)
    closings = [tx.txid for tx in sim.network.chain.txs.values() if tx.kind == "closing"]
    sim.network.mine(1)
    sim.start("us", "us-lnd", "us-2")
    await wait_for(state_is(engine, close_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="close")
    assert await event_types(engine, close_id) == [
        "ChannelCloseRequested", "ChannelClosing", "ChannelClosed",
    ]  # fmt: skip
    assert [tx.txid for tx in sim.network.chain.txs.values() if tx.kind == "closing"] == closings


async def test_a_close_of_a_channel_the_node_never_had_is_still_refused(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    """The other side of the idempotent close: without a recorded broadcast, a channel that is
    not on the node is not ours to call closed. The order is dead-lettered for an operator."""
    executor, _ = sim.start("us", "us-lnd", "us-1")
    close = {
        "type": "CloseChannel", "version": 1, "idempotency_key": "close-ghost", "region": "us",
        "node": "us-lnd", "channel_point": "ef" * 32 + ":0", "sat_per_vbyte": RATE,
        "max_onchain_fee_msat": 10 * FEE_MSAT,
    }  # fmt: skip
    close_id = (await request(nc, "channel_close", close))["intent_id"]
    await wait_for(lambda: executor.processed >= 1, what="the order to be refused")
    assert await event_types(engine, close_id) == ["ChannelCloseRequested"]


async def test_channel_fees_reserve_on_the_region_s_day_budget_and_past_it_are_refused(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client, sim: SimStack
) -> None:
    """ADR 0285: an open holds its on-chain fee on ``rblb-<region>-<day>`` in the batch of its
    request, the fee is spent when the channel opens, and an open the day cannot hold is
    refused on its fee field with nothing recorded or sent."""
    settings = Settings(relay_poll_s=0.2, state_dir=tmp_path,
                        channel_fee_budget_msat_per_day=FEE_MSAT + FEE_MSAT // 2)  # fmt: skip
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    try:
        await wait_for(engine.relay.leader.is_set, what="the relay to lead")
        sim.start("us", "us-lnd", "us-1")
        budget_id = budget_stream_id("us", budget_day(int(time.time() * 1000)))
        reply = await request(nc, "channel_open", open_command(sim, "fits"))
        assert reply["ok"] and reply["state"] == "requested", reply
        op_id = reply["intent_id"]
        over = await request(nc, "channel_open", open_command(sim, "over"))
        assert not over["ok"], over
        assert (over["error"]["code"], over["error"]["field"]) == (
            "fee_budget_exhausted", "max_onchain_fee_msat",
        )  # fmt: skip
        await wait_for(state_is(engine, op_id, "broadcast"), what="the funding broadcast")
        sim.network.mine(FUNDING_CONFIRMATIONS)
        await wait_for(state_is(engine, op_id, "completed"), timeout_s=OPEN_TIMEOUT_S, what="open")
        budget = await engine.store.read_stream(budget_id)
        assert [(e.type, e.payload["rebalance_id"]) for e in budget] == [
            ("RebalanceBudgetReserved", op_id), ("RebalanceBudgetReleased", op_id),
        ]  # fmt: skip
        assert budget[0].payload["reserved_msat"] == FEE_MSAT
        assert (budget[1].payload["spent_msat"], budget[1].payload["released_msat"]) == (
            FEE_MSAT, 0,
        )  # fmt: skip
        assert len(funding_txs(sim)) == 1  # the refused open sent nothing
    finally:
        await engine.stop()
