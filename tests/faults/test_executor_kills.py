"""kill -9 a region executor at three named points of one payment, under steady load.

Each point is a failpoint in ``services/executor/payer.py`` (``services/failpoints.py``): the
armed executor kills itself the third time it gets there, after writing the point's name to
the record file, so the drill proves it died *there* and not at a harmless moment. The drill
then starts a fresh (disarmed) executor for the node, as a supervisor would, and the load goes
on. The killed worker's unacked orders come back to the new one after ``ack_wait``.
"""

from __future__ import annotations

import pytest

from tests.faults.drill import drive
from tests.faults.harness import Harness

KILLED = "us-lnd"  # the corridor's preferred node: it carries the load when the kill comes
HIT = 3  # two payments go through the point before the one that dies there
POINTS = ("executor.before_send", "executor.after_send", "executor.after_outcome")


@pytest.mark.parametrize("point", POINTS)
async def test_executor_killed_at_failpoint(harness: Harness, point: str) -> None:
    await harness.start(failpoints={KILLED: f"{point}=kill@{HIT}"})
    notes: dict[str, object] = {}

    async def fault() -> None:
        notes["exit_code"] = await harness.executor_exit(KILLED, timeout_s=60.0)
        await harness.start_executor(KILLED)

    outcome = await drive(
        harness, f"kill-executor-{point}", fault=fault, fault_after=None, notes=notes
    )
    record = harness.failpoint_record.read_text().splitlines()
    assert [line.split()[0] for line in record] == [point], record
    assert record[0].split()[2] == str(HIT)
    assert notes["exit_code"] == -9
    outcome.verdict.assert_holds()
