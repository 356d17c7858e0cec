"""`corridor demo` end to end: the report's contract, no double payment, and the same report
for the same seed on every run, timings aside (docs/adr/0030-demo-faults-follow-the-workload.md).

The demo runs twice at a reduced size, as a user runs it (a subprocess with its own servers).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.cli import exit_codes
from services.demo.report import render_table
from services.demo.workload import CORRIDORS
from services.domain.intent.transitions import TERMINAL_STATUSES
from services.pilot.cli import answer
from tests.pilot_stories import FoldedSource
from tests.unit.test_pilot_report import assert_same_figures

REPO = Path(__file__).resolve().parents[2]
SEED = 3
INTENTS = 60
KEYS = {"intents", "by_state", "settled", "fee_rate_ppm_by_band", "route_failure_ratio",
        "auto_recovery_rate", "interventions_by_tier", "double_payments", "timeline",
        "timings"}  # fmt: skip
DEMO_TIMEOUT_S = 300


@dataclass(frozen=True)
class DemoRun:
    report: dict[str, Any]
    stdout: str
    stderr: str
    log_path: Path
    events_path: Path


def _run_demo(directory: Path) -> DemoRun:
    directory.mkdir()
    report_path, log_path = directory / "report.json", directory / "demo.log"
    events_path = directory / "events.jsonl"
    # Its own servers and credentials: none of the session's (ADR 0060).
    unset = ("NATS_URL", "DATABASE_URL", "CORRIDOR_CREDS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "demo", "--seed", str(SEED),
         "--intents", str(INTENTS), "--json", str(report_path), "--log-file", str(log_path),
         "--events", str(events_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return DemoRun(
        json.loads(report_path.read_text()), proc.stdout, proc.stderr, log_path, events_path
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoRun, DemoRun]:
    base = tmp_path_factory.mktemp("demo")
    return _run_demo(base / "first"), _run_demo(base / "second")


def _outcomes(report: dict[str, Any]) -> dict[str, Any]:
    """Everything but the timings: what must not change from run to run."""
    return {k: v for k, v in report.items() if k != "timings"}


def test_demo_reports_every_key_and_pays_nothing_twice(runs: tuple[DemoRun, DemoRun]) -> None:
    report = runs[0].report
    assert set(report) >= KEYS
    assert report["intents"] == INTENTS
    assert report["double_payments"] == 0
    assert report["paid_but_not_settled"] == []
    assert sum(report["by_state"].values()) == INTENTS
    # Every intent reached a final state, and the network paid exactly the settled ones.
    assert set(report["by_state"]) <= TERMINAL_STATUSES
    assert report["network_payments"]["succeeded"] == report["settled"]
    assert report["interventions_by_tier"]["approval"] > 0
    assert {"p50", "p95"} <= set(report["timings"]["latency_ms"])


def test_same_seed_gives_the_same_report(runs: tuple[DemoRun, DemoRun]) -> None:
    first, second = runs
    assert first.report["waves_not_at_rest"] == 0
    assert first.report["faults_not_seen_by_router"] == 0
    # Every count, ratio and timeline entry; only the timings may differ.
    assert _outcomes(first.report) == _outcomes(second.report)


def test_timeline_says_what_corridor_did_about_each_fault(runs: tuple[DemoRun, DemoRun]) -> None:
    timeline = {entry["fault"]: entry for entry in runs[0].report["timeline"]}
    assert list(timeline) == ["hold", "drain", "offline", "online"]
    # Derived from the log: held HTLCs failed with proof and were re-routed; the drained and
    # the offline node were skipped by routing; traffic returned to the node once it was back.
    assert timeline["hold"]["effects"]["attempts_failed"] > 0
    assert timeline["hold"]["effects"]["retried_to"]
    assert timeline["drain"]["effects"]["routed_around"] > 0
    assert timeline["offline"]["effects"]["routed_around"] > 0
    assert timeline["online"]["effects"]["dispatched_to_node"] > 0
    assert len(runs[0].report["timings"]["timeline_elapsed_s"]) == len(timeline)


def test_stdout_is_the_report_and_the_logs_go_to_the_file(runs: tuple[DemoRun, DemoRun]) -> None:
    run = runs[0]
    assert run.stdout == render_table(run.report, log_path=run.log_path)
    assert "Timeline (faults follow the workload" in run.stdout
    assert "\nNext: " in run.stdout and "corridor up" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].lstrip().startswith("corridor ")
    # stderr holds only the phase lines (no terminal here, so no progress line).
    assert all(line.startswith(("corridor demo:", "[")) for line in run.stderr.splitlines())
    lines = run.log_path.read_text().splitlines()
    assert lines, "the log file is empty"
    events = [json.loads(line)["event"] for line in lines]
    assert "demo_fault_injected" in events


def test_the_pilot_report_over_the_demo_s_log_has_the_demo_s_figures(
    runs: tuple[DemoRun, DemoRun],
) -> None:
    """Issue 15's "done": the pilot report answers for the seeded workload, and over one window
    holding all of it its figures are the demo report's (ADR 0155)."""
    run = runs[0]
    recorded = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    assert recorded and recorded[-1]["position"] == run.report["log_position_at_end"]
    now_ms = max(e["recorded_at_ms"] for e in recorded) + 1
    args = argparse.Namespace(window="90d", windows=1, corridor=None, thresholds=None, json=True)
    out = io.StringIO()
    code = asyncio.run(answer(args, FoldedSource(recorded), now_ms=now_ms, out=out))
    report = json.loads(out.getvalue())
    assert code in (exit_codes.OK, exit_codes.NO_GO)
    assert_same_figures(run.report, report["all_corridors"][0])
    shown = {c["corridor"]: c["windows"][0]["figures"]["intents"] for c in report["corridors"]}
    assert set(CORRIDORS) <= set(shown)
    assert sum(shown.values()) == run.report["intents"]
