"""LSP orders end to end (issue 19, ADR 0251, 0252): real nats-server and PostgreSQL, the
engine and region executors. The order goes to the engine on ``corridor.api.v1.lsp.order``;
the executor of the node that gets the channel talks LSPS1 to the simulated external LSP
through the real LND (gRPC) and CLN (JSON-RPC, custom messages through Corridor's plugin)
adapters and reports to the engine, which pays the LSP's invoice as an ordinary payment
intent of the order's caller. Nothing here writes the log but the engine.

The simulated network is the ground truth: the LSP's channel on our node, and every payment
attempt to the LSP, are checked where the money moves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from schemas import lsp_messages as lm
from schemas.codec import encode
from schemas.common import Caller
from schemas.replies import PaymentIntentStatus
from services.bootstrap import Engine
from services.bus import subjects
from services.domain.intent import TERMINAL_STATUSES
from services.domain.lsp_orders import TERMINAL, LspOrder, LspOrderStatus, replay
from services.engine.event_codec import to_domain
from services.engine.ids import intent_id_for
from services.executor import Executor
from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
from services.executor.nodes import adapter_for, resolve_node
from services.lightning.cln import ClnAdapter
from services.lightning.cln_plugin import CUSTOMMSG_PLUGIN
from services.lightning.port import NodePort
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
from services.sim.cln_server import start_cln_node_server
from services.sim.lnd_server import LndNodeServer, start_lnd_node_server
from services.sim.lsp import LspOptions, SimLsp
from services.sim.network import SimNetwork
from services.sim.topology import ChannelSpec, NodeSpec, Topology, default_topology
from tests.conftest import wait_for
from tests.integration.test_executor import FAST, SimStack
from tests.lightning.conftest import short_socket_dir

SEED = 19
LSP = "lsp-1"
EXECUTED = ("us-lnd", "eu-lnd")  # the corridor us-eu pays from these
CALLER = Caller(id="alice", kind="service")
LSP_BALANCE_SAT = 2_000_000
# Cheap enough that alice's payment runs without review in the default policy.
OPTIONS = LspOptions(fee_base_sat=100, fee_ppm=100)
RUN_DEADLINE_S = 30.0
TIMEOUT_S = 5.0


def topology() -> Topology:
    base = default_topology()
    return Topology(
        nodes=(*base.nodes, NodeSpec(name=LSP, role="lsp")),
        channels=(
            *base.channels,
            ChannelSpec(a=LSP, b="hub-us", capacity_msat=100_000_000_000),
            ChannelSpec(a="hub-us", b=LSP, capacity_msat=100_000_000_000),
        ),
        network=base.network,
    )


@dataclass
class LspWorld:
    sim: SimStack
    lsp: SimLsp
    ours: dict[str, NodePort]
    cln_socket: Path

    @property
    def network(self) -> SimNetwork:
        return self.sim.network

    def payments_to_lsp(self) -> list[Any]:
        return [p for p in self.network.payments() if p.destination == LSP]


@contextlib.asynccontextmanager
async def lsp_world(tmp_path: Path, nats_url: str, *, expiry_s: int) -> AsyncIterator[LspWorld]:
    network = SimNetwork.from_topology(topology(), seed=SEED)
    servers: list[LndNodeServer] = [
        await start_lnd_node_server(network, name, state_dir=tmp_path / "nodes")
        for name in EXECUTED
    ]
    nodes = []
    for server in servers:
        node = network.node(server.node_name)
        nodes.append({
            "name": node.name, "role": node.role, "region": node.region,
            "implementation": node.implementation, "endpoint": server.endpoint,
            "pubkey": node.pubkey,
        })  # fmt: skip
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": nodes}))
    lsp = SimLsp(network, LSP, options=OPTIONS, order_expiry_s=expiry_s)
    await lsp.start()
    stack = SimStack(network=network, state_dir=tmp_path, nats_url=nats_url)
    lnd = adapter_for(resolve_node("sim://us-lnd", region="us", state_dir=tmp_path).uri)
    async with short_socket_dir() as sockets:
        cln_server = await start_cln_node_server(
            network, "us-cln", socket_path=sockets / "us-cln.sock",
            plugins=((sys.executable, str(CUSTOMMSG_PLUGIN)),),
        )  # fmt: skip
        cln = ClnAdapter(cln_server.socket_path, timeout_s=TIMEOUT_S)
        try:
            yield LspWorld(
                sim=stack, lsp=lsp, ours={"us-lnd": lnd, "us-cln": cln},
                cln_socket=cln_server.socket_path,
            )  # fmt: skip
            assert not cln_server.plugins.errors, cln_server.plugins.errors
        finally:
            for executor, task in stack.running:
                await stack.kill(executor, task)
            await lnd.close()
            await cln.close()
            await cln_server.stop()
            await lsp.stop()
            for server in servers:
                await server.stop()
            await network.aclose()


def order(
    key: str,
    node: str,
    *,
    lsp_balance_sat: int = LSP_BALANCE_SAT,
    routing_fee_msat: int = 10_000,
    corridor: str = "us-eu",
) -> lm.OrderLspChannel:
    return lm.OrderLspChannel(
        idempotency_key=key, region="us", node=node, lsp_pubkey="00", max_fee_msat=1_000_000,
        lsp_balance_msat=lsp_balance_sat * 1000, max_routing_fee_msat=routing_fee_msat,
        corridor=corridor,
    )  # fmt: skip


def for_lsp(world: LspWorld, command: lm.OrderLspChannel) -> lm.OrderLspChannel:
    return msgspec.structs.replace(command, lsp_pubkey=world.lsp.pubkey)


async def place(nc: Client, command: lm.OrderLspChannel) -> dict[str, Any]:
    """The order as the caller's credential sends it: the engine decides and answers."""
    subject = f"{subjects.LSP_API_PREFIX}.order.{CALLER.id}"
    reply = json.loads((await nc.request(subject, encode(command), timeout=TIMEOUT_S)).data)
    assert reply["ok"], reply
    return dict(reply)


async def state_of(engine: Engine, order_id: str) -> LspOrder | None:
    return replay(to_domain(e) for e in await engine.store.read_stream(order_id))


async def until(engine: Engine, order_id: str, *statuses: LspOrderStatus) -> LspOrder:
    """The log's record of the order once it is in one of ``statuses``."""

    async def there() -> bool:
        state = await state_of(engine, order_id)
        return state is not None and state.status in statuses

    await wait_for(there, what=f"order {order_id} {statuses}", timeout_s=RUN_DEADLINE_S)
    state = await state_of(engine, order_id)
    assert state is not None
    return state


async def ended(engine: Engine, order_id: str) -> LspOrder:
    return await until(engine, order_id, *TERMINAL)


async def start_executor(world: LspWorld, node: str, executor_id: str) -> Executor:
    if node != "us-cln":
        executor, _ = world.sim.start(node.split("-")[0], node, executor_id, FAST)
    else:  # its own connection to the CLN node Corridor's plugin runs in
        state_dir = world.sim.state_dir
        executor = Executor(
            nats_url=world.sim.nats_url, region="us", node_name=node,
            node=ClnAdapter(world.cln_socket, timeout_s=TIMEOUT_S), executor_id=executor_id,
            secret=load_or_create_secret(state_dir / SECRET_FILE_NAME), limits=FAST,
            verifier=FileKeyring(keys_dir(state_dir) / PUBLIC_KEYS_FILE),
        )  # fmt: skip
        world.sim.running.append((executor, asyncio.create_task(executor.run())))
    await wait_for(executor.ready.is_set, what=f"the {node} executor to start")
    return executor


async def start_executors(world: LspWorld, nodes: tuple[str, ...] = EXECUTED) -> None:
    for node in nodes:
        await start_executor(world, node, f"{node}-1")


@pytest.mark.parametrize("node", ["us-lnd", "us-cln"])
async def test_an_order_completes_once_and_adds_inbound_liquidity(
    engine: Engine, nc: Client, tmp_path: Path, nats_url: str, node: str
) -> None:
    async with lsp_world(tmp_path, nats_url, expiry_s=600) as world:
        await start_executors(world, tuple({*EXECUTED, node}))
        inbound_before = (await world.ours[node].liquidity_summary()).inbound_msat
        placed = await place(nc, for_lsp(world, order("buy-1", node)))
        assert placed["state"] == "requested" and not placed["duplicate"]
        done = await ended(engine, placed["intent_id"])
        assert done.status == "completed", done
        again = await place(nc, for_lsp(world, order("buy-1", node)))
        assert again["intent_id"] == done.lsp_order_id and again["duplicate"]
        assert again["state"] == "completed"
        stored = await engine.store.read_stream(done.lsp_order_id)
        assert [e.type for e in stored] == [
            "LspOrderRequested", "LspOrderCreated", "LspOrderPaymentRequested",
            "LspOrderPaid", "LspOrderCompleted",
        ]  # fmt: skip
        # Every record is the engine's: the order as its caller's, the rest as the executor's
        # report or the engine's own (its payment).
        assert stored[0].metadata["actor"] == f"caller:{CALLER.id}"
        assert {e.metadata["actor"] for e in stored[1:]} <= {f"executor:{node}", "corridor"}
        # The invoice was paid once, by one ordinary intent whose key is the order's.
        paid = world.payments_to_lsp()
        assert [p.status for p in paid] == ["succeeded"], paid
        assert done.payment_intent_id is not None
        intent = await engine.store.read_stream(done.payment_intent_id)
        types = [e.type for e in intent]
        assert "IntentReceived" in types and "PaymentSucceeded" in types, types
        assert intent[0].payload["idempotency_key"] == lm.payment_key_of(done.lsp_order_id)
        assert intent[0].payload["caller"]["id"] == CALLER.id
        assert len(world.lsp.orders) == 1
        # The channel is on the chain, funded by the LSP: our inbound liquidity.
        world.network.mine(6)
        [channel] = [
            c for c in await world.ours[node].list_channels()
            if c.peer_pubkey == world.lsp.pubkey
        ]  # fmt: skip
        assert channel.channel_point == done.funding_outpoint
        assert channel.remote_balance_msat == LSP_BALANCE_SAT * 1000
        inbound_after = (await world.ours[node].liquidity_summary()).inbound_msat
        # Whatever this node paid out also moved to the remote side of its channels.
        paid_out_msat = sum(p.amount_msat + p.fee_msat for p in paid if p.origin == node)
        assert inbound_after - inbound_before == LSP_BALANCE_SAT * 1000 + paid_out_msat


async def test_a_refused_order_ends_refused_with_nothing_paid(
    engine: Engine, nc: Client, tmp_path: Path, nats_url: str
) -> None:
    async with lsp_world(tmp_path, nats_url, expiry_s=600) as world:
        await start_executors(world, ("us-lnd",))
        too_big = OPTIONS.max_initial_lsp_balance_sat + 1
        placed = await place(nc, for_lsp(world, order("big", "us-lnd", lsp_balance_sat=too_big)))
        done = await ended(engine, placed["intent_id"])
        assert done.status == "refused" and done.outcome == "100", done
        assert done.payment_key is None and world.payments_to_lsp() == []
        assert world.lsp.orders == {}


async def test_an_order_left_unpaid_expires_failed_and_is_never_paid(
    engine: Engine, nc: Client, tmp_path: Path, nats_url: str
) -> None:
    """The corridor eu-asia pays from eu-lnd, whose executor does not run yet: the intent
    waits, the LSP's order expires, the order ends failed, and the executor that starts
    afterwards cannot pay the cancelled invoice."""
    async with lsp_world(tmp_path, nats_url, expiry_s=3) as world:
        await start_executors(world, ("us-lnd",))
        placed = await place(nc, for_lsp(world, order("late", "us-lnd", corridor="eu-asia")))
        done = await ended(engine, placed["intent_id"])
        assert done.status == "failed" and done.outcome == "expired_unpaid", done
        await start_executors(world, ("eu-lnd",))
        assert done.payment_key is not None
        intent_id = intent_id_for(CALLER.id, done.payment_key)

        async def intent_ended() -> bool:
            status = await engine.processor.status(intent_id)
            return isinstance(status, PaymentIntentStatus) and status.state in TERMINAL_STATUSES

        await wait_for(intent_ended, what="the late intent to end", timeout_s=RUN_DEADLINE_S)
        failed = await engine.processor.status(intent_id)
        assert isinstance(failed, PaymentIntentStatus) and failed.state == "failed", failed
        assert await state_of(engine, done.lsp_order_id) == done  # terminal: nothing changes
        assert all(p.status == "failed" for p in world.payments_to_lsp())
        [remote] = world.lsp.orders.values()
        assert (remote.order_state, remote.payment_state) == ("FAILED", "REFUNDED")
        assert world.network.pending_channels_of(LSP) == []


async def test_a_payment_the_policy_refuses_fails_the_order_unpaid(
    engine: Engine, nc: Client, tmp_path: Path, nats_url: str
) -> None:
    """The invoice's payment is an ordinary intent: the policy's fee cap applies to it."""
    async with lsp_world(tmp_path, nats_url, expiry_s=600) as world:
        await start_executors(world)
        greedy = order("greedy", "us-lnd", routing_fee_msat=1_000_000)
        placed = await place(nc, for_lsp(world, greedy))
        done = await ended(engine, placed["intent_id"])
        assert done.status == "failed" and done.outcome == "payment_failed", done
        assert world.payments_to_lsp() == []


async def test_an_executor_restart_mid_order_neither_orders_again_nor_pays_twice(
    engine: Engine, nc: Client, tmp_path: Path, nats_url: str
) -> None:
    """The us-lnd executor is killed once the LSP's order is recorded and its payment waits
    (eu-lnd pays the corridor eu-asia and is not running); a new us-lnd executor gets the same
    work order again, follows the recorded remote order, and the order completes with one
    remote order and one payment."""
    async with lsp_world(tmp_path, nats_url, expiry_s=600) as world:
        first = await start_executor(world, "us-lnd", "us-lnd-1")
        placed = await place(nc, for_lsp(world, order("restart", "us-lnd", corridor="eu-asia")))
        paying = await until(engine, placed["intent_id"], LspOrderStatus.PAYING)
        [(executor, task)] = [(e, t) for e, t in world.sim.running if e is first]
        await world.sim.kill(executor, task)
        await start_executor(world, "us-lnd", "us-lnd-2")
        await start_executors(world, ("eu-lnd",))
        done = await ended(engine, placed["intent_id"])
        assert done.status == "completed", done
        assert done.remote_order_id == paying.remote_order_id
        assert len(world.lsp.orders) == 1
        assert [p.status for p in world.payments_to_lsp()] == ["succeeded"]
