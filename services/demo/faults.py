"""The demo's fault script: which fault, after which intent, and when routing has seen it.

Faults follow the workload, never the clock (docs/adr/0030-demo-faults-follow-the-workload.md).
A fault is injected after intent N has come to rest, with nothing of the workload in flight,
and the workload goes on only once the engine's health board shows it. So every intent meets
the same network, and the same routing view, on every run with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.domain.routing import NodeHealth
from services.sim.network import SimNetwork

FaultKind = Literal["hold", "drain", "offline", "online"]

DRAINED_NODE = "eu-lnd"
OUTAGE_NODE = "us-lnd"
HELD_NODE = "us-lnd"
# The next payments through the held node are parked until their HTLCs time out: far below the
# executors' pay timeout, so the node answers with a final failure (proof that it did not pay),
# never with "still in flight".
HOLD_COUNT = 2
HOLD_TIMEOUT_S = 0.5

# (short, long) descriptions of each kind of fault.
_WHAT = {
    "hold": (
        "{node} holding HTLCs",
        f"the next {HOLD_COUNT} payments through {{node}} held until their HTLCs time out "
        f"({HOLD_TIMEOUT_S} s)",
    ),
    "drain": ("{node} drained", "{node} drained: all its outbound liquidity moved to its peers"),
    "offline": ("{node} offline", "{node} taken offline (RPC refused, channels inactive)"),
    "online": ("{node} back", "{node} back online"),
}


@dataclass(frozen=True, slots=True)
class FaultStep:
    after_intent: int  # injected once intents 0 .. after_intent - 1 have come to rest
    kind: FaultKind
    node: str

    def describe(self) -> str:
        return _WHAT[self.kind][1].format(node=self.node)

    def short(self) -> str:
        return _WHAT[self.kind][0].format(node=self.node)


def fault_schedule(intents: int) -> tuple[FaultStep, ...]:
    """Hold a few HTLCs a quarter of the way through; drain one node at a third; take another
    offline from half to 80 % of the workload."""
    assert intents >= 1
    return (
        FaultStep(after_intent=intents // 4, kind="hold", node=HELD_NODE),
        FaultStep(after_intent=intents // 3, kind="drain", node=DRAINED_NODE),
        FaultStep(after_intent=intents // 2, kind="offline", node=OUTAGE_NODE),
        FaultStep(after_intent=intents * 4 // 5, kind="online", node=OUTAGE_NODE),
    )


def inject(step: FaultStep, network: SimNetwork) -> None:
    match step.kind:
        case "hold":
            network.faults.drop_resolution(
                node=step.node, count=HOLD_COUNT, timeout_s=HOLD_TIMEOUT_S
            )
        case "drain":
            for channel in network.channels_of(step.node):
                network.faults.drain_channel(channel.channel_id, toward=channel.peer)
        case "offline":
            network.faults.set_offline(step.node)
        case "online":
            network.faults.set_offline(step.node, offline=False)


def seen_by_router(step: FaultStep, health: NodeHealth | None) -> bool:
    """Whether the health the router reads for ``step.node`` shows the fault.

    Each answer is one that only a report observed after the fault can give (a drained node
    had outbound liquidity before, an offline node was healthy), so no report older than the
    fault can satisfy it. Held HTLCs are invisible to health reports, as on a real network:
    only a failed attempt tells.
    """
    if step.kind == "hold":
        return True
    if health is None:
        return False
    match step.kind:
        case "drain":
            return health.healthy and health.outbound_msat == 0
        case "offline":
            return not health.healthy
        case "online":
            return health.healthy
    raise AssertionError(step.kind)


def holding(network: SimNetwork) -> bool:
    """Whether held HTLCs are still to come: then intents go one at a time, so which payments
    are held follows the workload's order, not the order they reach the network."""
    return bool(network.faults.drops)
