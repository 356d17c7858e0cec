"""Small runs of the simulation whose logs the invariant tests break on purpose."""

from __future__ import annotations

from services.eventstore.port import StoredEvent
from services.simulation.runner import Simulation


async def run(seed: int, submits: int, *, down: dict[str, str] | None = None) -> Simulation:
    """``submits`` seeded submits, driven to rest without faults (nodes in ``down`` fail)."""
    sim = Simulation(seed, steps=0)
    sim.down_nodes = dict(down or {})
    await sim.start()
    try:
        for _ in range(submits):
            sim.submit()
        await sim.drain()
    finally:
        await sim.stop()
    return sim


async def log_of(sim: Simulation) -> list[StoredEvent]:
    return await sim.store.read_all(after_position=0, limit=10**9)


# Every corridor's first candidate is one of these: with both down, each intent is routed anew
# after a failure its node proved did not pay.
FIRST_NODES_DOWN = {"us-lnd": "no_route", "eu-lnd": "insufficient_liquidity"}
