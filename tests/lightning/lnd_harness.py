"""A simulated network with one LND node served over gRPC, and an adapter connected to it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from services.lightning.lnd import LndAdapter
from services.sim.lnd_server import LndNodeServer, start_lnd_node_server
from services.sim.network import SimNetwork
from services.sim.records import SimInvoice, SimPayment
from services.sim.topology import ChannelSpec, NodeSpec, PolicySpec, Topology

SEED = 11
CAPACITY_MSAT = 2_000_000_000  # 0.02 BTC per channel
OUR_BALANCE_MSAT = 1_500_000_000
MAX_FEE_MSAT = 50_000
# Generous for a loopback call; a test that waits this long has found a bug.
CONDITION_TIMEOUT_S = 5.0


def lnd_topology() -> Topology:
    """alice (ours, lnd) and dave (ours, lnd) -> hub -> bob (lnd) | carol (cln)."""
    hub = PolicySpec(fee_base_msat=1000, fee_ppm=100, cltv_delta=40)
    edge = PolicySpec(fee_base_msat=0, fee_ppm=10, cltv_delta=40)
    return Topology(
        nodes=(
            NodeSpec(name="alice", role="ours", implementation="lnd", region="us"),
            NodeSpec(name="dave", role="ours", implementation="lnd", region="eu"),
            NodeSpec(name="hub", role="hub", implementation="lnd"),
            NodeSpec(name="bob", role="merchant", implementation="lnd", region="us"),
            NodeSpec(name="carol", role="merchant", implementation="cln", region="eu"),
        ),
        channels=(
            ChannelSpec(
                a="alice",
                b="hub",
                capacity_msat=CAPACITY_MSAT,
                a_balance_msat=OUR_BALANCE_MSAT,
                a_policy=edge,
                b_policy=hub,
            ),
            ChannelSpec(
                a="dave",
                b="hub",
                capacity_msat=CAPACITY_MSAT,
                a_balance_msat=OUR_BALANCE_MSAT,
                a_policy=edge,
                b_policy=hub,
            ),
            ChannelSpec(a="hub", b="bob", capacity_msat=CAPACITY_MSAT, a_policy=hub, b_policy=edge),
            ChannelSpec(
                a="hub", b="carol", capacity_msat=CAPACITY_MSAT, a_policy=hub, b_policy=edge
            ),
        ),
    )


@dataclass
class LndHarness:
    network: SimNetwork
    server: LndNodeServer
    adapter: LndAdapter
    node: str

    def invoice(self, amount_msat: int | None = 100_000, *, payee: str = "bob") -> SimInvoice:
        return self.network.create_invoice(payee, amount_msat, "test", 3600)

    def attempts(self, payment_hash: str) -> list[SimPayment]:
        """Ground truth: every attempt the network saw for this hash, from any node."""
        return [p for p in self.network.payments() if p.payment_hash == payment_hash]


@contextlib.asynccontextmanager
async def served_lnd_node(
    network: SimNetwork, node: str, state_dir: Path, *, timeout_s: float = 5.0
) -> AsyncIterator[tuple[LndNodeServer, LndAdapter]]:
    """Serve ``node`` of ``network`` over lnd's gRPC API and connect an adapter to it."""
    server = await start_lnd_node_server(network, node, state_dir=state_dir)
    adapter = LndAdapter.from_uri(server.endpoint, timeout_s=timeout_s)
    try:
        yield server, adapter
    finally:
        await adapter.close()
        await server.stop()


@contextlib.asynccontextmanager
async def lnd_harness(
    state_dir: Path, *, node: str = "alice", timeout_s: float = 5.0
) -> AsyncIterator[LndHarness]:
    network = SimNetwork.from_topology(lnd_topology(), seed=SEED)
    try:
        async with served_lnd_node(network, node, state_dir, timeout_s=timeout_s) as served:
            server, adapter = served
            yield LndHarness(network=network, server=server, adapter=adapter, node=node)
    finally:
        await network.aclose()


async def wait_until(
    condition: Callable[[], bool], *, timeout_s: float = CONDITION_TIMEOUT_S
) -> None:
    """Wait for ``condition`` to hold, yielding to the loop in between; fail at the deadline."""
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.005)
