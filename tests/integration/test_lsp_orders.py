"""LSP orders end to end (issue 19, ADR 0251): real nats-server and PostgreSQL, the engine and
region executors, our node talking LSPS1 to the simulated external LSP through the real LND
(gRPC) and CLN (JSON-RPC, custom messages through Corridor's plugin) adapters, and the LSP's
invoice paid as an ordinary payment intent by the executors.

The simulated network is the ground truth: the LSP's channel on our node, and every payment
attempt to the LSP, are checked where the money moves."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from schemas import lsp_messages as lm
from schemas.common import Caller
from services.bootstrap import Engine
from services.executor.nodes import adapter_for, resolve_node
from services.lightning.cln import ClnAdapter
from services.lightning.cln_plugin import CUSTOMMSG_PLUGIN
from services.lightning.port import NodePort
from services.lsps.client import LspsClient
from services.lsps.intents import EngineIntents
from services.lsps.orders import LspOrders
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
            yield LspWorld(sim=stack, lsp=lsp, ours={"us-lnd": lnd, "us-cln": cln})
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


@contextlib.asynccontextmanager
async def orders_on(
    world: LspWorld, engine: Engine, nc: Client, node: str
) -> AsyncIterator[LspOrders]:
    adapter = world.ours[node]
    async with LspsClient(adapter) as client:
        yield LspOrders(
            store=engine.store, node=adapter, lsps=client,
            intents=EngineIntents(nc, caller=CALLER, corridor="us-eu"), caller=CALLER,
            timeout_s=TIMEOUT_S,
        )  # fmt: skip


def order(
    key: str, node: str, *, lsp_balance_sat: int = LSP_BALANCE_SAT, routing_fee_msat: int = 10_000
) -> lm.OrderLspChannel:
    return lm.OrderLspChannel(
        idempotency_key=key, region="us", node=node, lsp_pubkey="00", max_fee_msat=1_000_000,
        lsp_balance_msat=lsp_balance_sat * 1000, max_routing_fee_msat=routing_fee_msat,
    )  # fmt: skip


def for_lsp(world: LspWorld, command: lm.OrderLspChannel) -> lm.OrderLspChannel:
    return msgspec.structs.replace(command, lsp_pubkey=world.lsp.pubkey)


async def start_executors(world: LspWorld) -> None:
    for node in EXECUTED:
        executor, _ = world.sim.start(node.split("-")[0], node, f"{node}-1", FAST)
        await wait_for(executor.ready.is_set, what=f"the {node} executor to start")


@pytest.mark.parametrize("node", ["us-lnd", "us-cln"])
async def test_an_order_completes_once_and_adds_inbound_liquidity(
    engine: Engine, nc: Client, tmp_path: Path, nats_url: str, node: str
) -> None:
    async with lsp_world(tmp_path, nats_url, expiry_s=600) as world:
        await start_executors(world)
        inbound_before = (await world.ours[node].liquidity_summary()).inbound_msat
        async with orders_on(world, engine, nc, node) as orders:
            state = await orders.order(for_lsp(world, order("buy-1", node)))
            done = await orders.run(
                state.lsp_order_id, deadline_s=time.monotonic() + RUN_DEADLINE_S
            )
            assert done.status == "completed", done
            again = await orders.order(for_lsp(world, order("buy-1", node)))
            assert again.lsp_order_id == done.lsp_order_id and again.status == "completed"
            assert (await orders.step(done.lsp_order_id)) == done
        types = [e.type for e in await engine.store.read_stream(done.lsp_order_id)]
        assert types == ["LspOrderRequested", "LspOrderCreated", "LspOrderPaymentRequested",
                         "LspOrderPaid", "LspOrderCompleted"]  # fmt: skip
        # The invoice was paid once, by one ordinary intent whose key is the order's.
        paid = world.payments_to_lsp()
        assert [p.status for p in paid] == ["succeeded"], paid
        assert done.payment_intent_id is not None
        intent = [e.type for e in await engine.store.read_stream(done.payment_intent_id)]
        assert "IntentReceived" in intent and "PaymentSucceeded" in intent, intent
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
        too_big = OPTIONS.max_initial_lsp_balance_sat + 1
        async with orders_on(world, engine, nc, "us-lnd") as orders:
            state = await orders.order(
                for_lsp(world, order("big", "us-lnd", lsp_balance_sat=too_big))
            )
            done = await orders.run(
                state.lsp_order_id, deadline_s=time.monotonic() + RUN_DEADLINE_S
            )
        assert done.status == "refused" and done.outcome == "100", done
        assert done.payment_key is None and world.payments_to_lsp() == []
        assert world.lsp.orders == {}


async def test_an_order_left_unpaid_expires_failed_and_is_never_paid(
    engine: Engine, nc: Client, tmp_path: Path, nats_url: str
) -> None:
    """No executor runs, so the order's payment intent waits; the LSP's order expires, the
    order ends failed, and the executor that starts afterwards cannot pay the cancelled
    invoice."""
    async with lsp_world(tmp_path, nats_url, expiry_s=3) as world:
        async with orders_on(world, engine, nc, "us-lnd") as orders:
            state = await orders.order(for_lsp(world, order("late", "us-lnd")))
            done = await orders.run(
                state.lsp_order_id, deadline_s=time.monotonic() + RUN_DEADLINE_S
            )
            assert done.status == "failed" and done.outcome == "expired_unpaid", done
            await start_executors(world)
            assert done.payment_key is not None
            assert done.invoice is not None and done.order_total_msat is not None
            intents = EngineIntents(nc, caller=CALLER, corridor="us-eu")
            intent_id = await intents.pay(  # the order's key: the same intent as before
                key=done.payment_key, invoice=done.invoice, amount_msat=done.order_total_msat,
                max_fee_msat=done.max_routing_fee_msat,
            )  # fmt: skip

            async def intent_ended() -> bool:
                return await intents.outcome(intent_id) is not None

            await wait_for(intent_ended, what="the late intent to end", timeout_s=RUN_DEADLINE_S)
            assert await intents.outcome(intent_id) == "failed"
            assert (await orders.step(done.lsp_order_id)) == done  # terminal: nothing changes
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
        async with orders_on(world, engine, nc, "us-lnd") as orders:
            greedy = order("greedy", "us-lnd", routing_fee_msat=1_000_000)
            state = await orders.order(for_lsp(world, greedy))
            done = await orders.run(
                state.lsp_order_id, deadline_s=time.monotonic() + RUN_DEADLINE_S
            )
        assert done.status == "failed" and done.outcome == "payment_failed", done
        assert world.payments_to_lsp() == []
