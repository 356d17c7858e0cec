"""Small topologies and shortcuts shared by the simulator tests."""

from __future__ import annotations

from services.sim.clock import ManualClock
from services.sim.network import SimNetwork
from services.sim.topology import ChannelSpec, NodeSpec, PolicySpec, Topology

MSAT_PER_SAT = 1000


def diamond_topology(*, capacity_msat: int = 10_000_000) -> Topology:
    """alice -> (hub1 | hub2) -> bob; hub1 is cheaper than hub2."""
    cheap = PolicySpec(fee_base_msat=1000, fee_ppm=100, cltv_delta=40)
    dear = PolicySpec(fee_base_msat=2000, fee_ppm=500, cltv_delta=40)
    return Topology(
        nodes=(
            NodeSpec(name="alice", role="ours", implementation="cln", region="us"),
            NodeSpec(name="hub1", role="hub"),
            NodeSpec(name="hub2", role="hub"),
            NodeSpec(name="bob", role="merchant", implementation="lnd", region="us"),
            NodeSpec(name="carol", role="merchant", implementation="cln", region="eu"),
        ),
        channels=(
            ChannelSpec(
                a="alice", b="hub1", capacity_msat=capacity_msat, a_policy=cheap, b_policy=cheap
            ),
            ChannelSpec(
                a="alice", b="hub2", capacity_msat=capacity_msat, a_policy=cheap, b_policy=dear
            ),
            ChannelSpec(
                a="hub1", b="bob", capacity_msat=capacity_msat, a_policy=cheap, b_policy=cheap
            ),
            ChannelSpec(
                a="hub2", b="bob", capacity_msat=capacity_msat, a_policy=dear, b_policy=cheap
            ),
            ChannelSpec(
                a="hub1", b="carol", capacity_msat=capacity_msat, a_policy=cheap, b_policy=cheap
            ),
        ),
    )


def manual_network(
    topology: Topology | None = None, *, seed: int = 1, hop_delay_s: float = 0.0
) -> tuple[SimNetwork, ManualClock]:
    clock = ManualClock()
    network = SimNetwork.from_topology(
        topology or diamond_topology(), seed=seed, now_s=clock, hop_delay_s=hop_delay_s
    )
    return network, clock


def channel_between(network: SimNetwork, node: str, peer: str) -> str:
    return next(c.channel_id for c in network.channels_of(node) if c.peer == peer)
