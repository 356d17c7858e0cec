"""``corridor drill region-failover`` against the drills' stack (corridor us-eu over us-lnd,
preferred, and eu-lnd): region us goes down under load, traffic moves to eu and returns once
us is back; and the drill reports failure when the region never comes back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from services.cli import exit_codes
from services.drills import region_failover
from services.drills.target import find_target
from tests.faults.drill import OBSERVED
from tests.faults.harness import CALLER, CORRIDOR, REPO, Harness

INTENTS = 150
# "It happened" deadlines on a busy 2-core machine, not performance targets.
DEADLINE_S = 60.0
NEVER_BACK_DEADLINE_S = 8.0


def drill_args(harness: Harness) -> list[str]:
    return [
        "--state-dir", str(harness.engine_dir), "--sim-state-dir", str(harness.sim_dir),
        "--creds", str(harness.caller_creds), "--caller-id", CALLER, "--corridor", CORRIDOR,
        "--intents", str(INTENTS), "--region", "us",
    ]  # fmt: skip


async def test_region_failover_drill_passes(harness: Harness) -> None:
    await harness.start()
    argv = [sys.executable, "-m", "services.cli.main", "drill", "region-failover",
            *drill_args(harness), "--deadline-s", str(DEADLINE_S), "--json",
            "--tag", "rf-pass"]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, env=harness._env(), cwd=REPO,
        timeout=400,
    )  # fmt: skip
    assert done.stdout, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    OBSERVED.append({"drill": "corridor drill region-failover", **_figures(report)})
    assert done.returncode == exit_codes.OK, report
    assert report["passed"] and all(report["checks"].values()), report
    by_phase = report["settled_by_region"]
    assert by_phase["before"].get("us", 0) >= 3, by_phase
    assert by_phase["during"].get("eu", 0) >= 3, by_phase
    assert by_phase["after"].get("us", 0) >= 1, by_phase
    assert report["time_to_move_ms"] is not None and report["time_to_return_ms"] is not None
    assert report["ledger"]["double_payments"] == 0 and report["ledger"]["lost"] == 0
    # The intents' own routes say why: the region's node was passed over while it was down.
    assert any(k.startswith("us-lnd:") for k in report["routes_passing_over_region"]), report


async def test_region_failover_drill_fails_when_the_region_never_returns(
    harness: Harness,
) -> None:
    await harness.start()
    target = find_target(
        harness.engine_dir, harness.sim_dir, creds=harness.caller_creds,
        caller_id=CALLER, corridor=CORRIDOR,
    )  # fmt: skip
    options = region_failover.Options(
        region="us", intents=INTENTS, deadline_s=NEVER_BACK_DEADLINE_S, tag="rf-never",
        bring_back=False,
    )  # fmt: skip
    report = await region_failover.run(target, options)
    assert not report.passed and report.exit_code() == exit_codes.VERIFICATION_FAILED
    assert report.checks["traffic moved to other regions"], report.figures
    assert not report.checks["traffic returned to us"], report.figures
    assert report.figures["time_to_return_ms"] is None
    # The drill brought the region back on its way out: nothing was paid twice or lost.
    assert report.checks["ledger holds (no double payment, no lost intent)"], report.figures


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("time_to_move_ms", "time_to_return_ms", "settled_by_region",
            "share_elsewhere_while_down_pct", "routes_passing_over_region", "pilot_metrics",
            "load", "checks")  # fmt: skip
    return {k: report.get(k) for k in keys}
