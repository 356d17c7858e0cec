"""Rebalances under real-process faults (issue 18, ADR 0284): kill -9 of the source node's
executor right after it sent a move, and a PostgreSQL crash, while moves go both ways between
the drill's two nodes. Each move, asked twice, is paid at most once on the simulated network's
ledger, a success is exactly one payment of its hash, the day budgets hold, and every move
ends."""

from __future__ import annotations

import asyncio
from collections import Counter

from services.bus.jetstream import connect
from tests.faults.harness import Harness
from tests.faults.rebalance_load import bodies, request, verdict

KILLED = "us-lnd"  # the first move's source
HIT = 2  # one move goes through the point before the one that dies there
MOVES = 8


async def _moves(harness: Harness, tag: str, *, fault_after: int, fault: object) -> list[str]:
    """Ask every move twice (the same key), the fault once ``fault_after`` are accepted."""
    nc = await connect(harness.stack.nats_url, name=f"drill-{tag}", creds=harness.caller_creds)
    ids: list[str] = []
    faulted: asyncio.Task[None] | None = None
    try:
        for i, body in enumerate(bodies(harness, tag, MOVES)):
            ids.append(await request(nc, body))
            assert await request(nc, body) == ids[-1]  # idempotent
            if i + 1 == fault_after:
                faulted = asyncio.ensure_future(fault())  # type: ignore[operator]
        assert faulted is not None
        await faulted
    finally:
        await nc.close()
    return ids


async def test_rebalances_survive_an_executor_killed_right_after_sending(
    harness: Harness,
) -> None:
    await harness.start(failpoints={KILLED: f"executor.after_send=kill@{HIT}"})
    notes: dict[str, int] = {}

    async def fault() -> None:
        notes["exit_code"] = await harness.executor_exit(KILLED, timeout_s=60.0)
        await harness.start_executor(KILLED)

    ids = await _moves(harness, "rbl-kill", fault_after=1, fault=fault)
    found = await verdict(harness, ids)
    record = harness.failpoint_record.read_text().splitlines()
    assert [line.split()[0] for line in record] == ["executor.after_send"], record
    assert notes["exit_code"] == -9
    assert found == [], Counter(v.invariant for v in found)


async def test_rebalances_survive_a_postgres_crash(harness: Harness) -> None:
    await harness.start()
    notes: dict[str, bool] = {}

    async def fault() -> None:
        log = await harness.crash_postgres()
        notes["recovered"] = "automatic recovery in progress" in log

    ids = await _moves(harness, "rbl-pg", fault_after=MOVES // 2, fault=fault)
    found = await verdict(harness, ids)
    assert notes["recovered"], "PostgreSQL did not go through crash recovery"
    assert found == [], Counter(v.invariant for v in found)
