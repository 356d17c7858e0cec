"""A seed gives one fault schedule and one run, exactly; another seed gives others."""

from __future__ import annotations

import os
import random
import subprocess
import sys

from services.simulation.faults import SLICE_KINDS, FaultKind, FaultPlan
from services.simulation.runner import Simulation
from services.simulation.scheduler import RunQueue, SeededIds, VirtualClock


def test_the_same_seed_draws_the_same_schedule_and_prints_it() -> None:
    plan = FaultPlan.draw(42, steps=200)
    assert plan == FaultPlan.draw(42, steps=200)
    text = plan.text()
    assert text.startswith("seed 42: ") and text == FaultPlan.draw(42, steps=200).text()
    assert all(f"step {f.step:4d}: {f.kind}" in text for f in plan.faults)
    assert plan != FaultPlan.draw(43, steps=200)


def test_every_kind_of_the_slice_is_drawn_across_seeds() -> None:
    drawn = {f.kind for seed in range(30) for f in FaultPlan.draw(seed, steps=60).faults}
    assert drawn == set(SLICE_KINDS)
    restart = next(f for s in range(30) for f in FaultPlan.draw(s, steps=60).faults
                   if f.kind == FaultKind.DATABASE_RESTART)  # fmt: skip
    plan = FaultPlan(0, (restart,))
    assert plan.at(restart.step) == plan.at(restart.step + 1) == [FaultKind.DATABASE_RESTART]


def test_the_run_queue_and_ids_follow_the_seed_only() -> None:
    def order(seed: int) -> list[str]:
        queue = RunQueue(random.Random(seed))
        for i in range(10):
            queue.push(f"t{i}", _nothing)
        return [t.name for t in queue.take(4)] + [t.name for t in queue.take(10)]

    assert order(1) == order(1) and order(1) != order(2)
    assert sorted(order(1)) == sorted(f"t{i}" for i in range(10))
    ids = SeededIds(random.Random(5))
    assert ids.new_id() == SeededIds(random.Random(5)).new_id()
    clock = VirtualClock()
    before = clock.now_ms()
    clock.advance(7)
    assert clock.now_ms() == before + 7


async def _nothing() -> None:
    return None


async def _run(seed: int) -> tuple[list[str], bytes | None, str]:
    sim = Simulation(seed, steps=40)
    result = await sim.run()
    head = await sim.store.hash_at(await sim.store.head_position())
    return result.trace, head, result.plan.text()


async def test_the_same_seed_gives_the_same_trace_and_log_and_another_seed_does_not() -> None:
    first, again, other = await _run(3), await _run(3), await _run(4)
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]


def test_a_seed_replays_exactly_in_another_process_with_other_string_hashing() -> None:
    """No order comes from iterating a set of strings: the log's last hash is the same under
    two ``PYTHONHASHSEED``s."""
    script = (
        "import asyncio, logging, structlog\n"
        "structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))\n"
        "from services.simulation.runner import Simulation\n"
        "async def go():\n"
        "    sim = Simulation(9, steps=40)\n"
        "    await sim.run()\n"
        "    print((await sim.store.hash_at(await sim.store.head_position())).hex())\n"
        "asyncio.run(go())\n"
    )
    heads = {
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout.strip()
        for h in (1, 2)
    }  # fmt: skip
    assert len(heads) == 1 and len(next(iter(heads))) == 64
