"""``corridor pilot report`` over real PostgreSQL (ADR 0155): a workload written to the log, the
command run as a user runs it, its projections caught up from the log; the verdict, the exit
code, and figures equal to the demo's report (``projections.pilot_metrics``) on the same log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from projections.pilot_metrics import build as build_pilot_metrics
from schemas.records import EventMetadata
from services.engine.event_codec import to_new_events
from services.eventstore.postgres import PostgresEventStore
from tests.pilot_stories import Story, recon_typed
from tests.unit.test_pilot_report import AT_THE_FIGURES, _toml, _workload, assert_same_figures

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60
_META = EventMetadata(correlation_id="pilot-test", causation_id="pilot-test", actor="test")


async def _write(store: PostgresEventStore, streams: dict[str, list[tuple[int, Any]]]) -> None:
    for stream_id, typed in streams.items():
        for version, (at_ms, data) in enumerate(typed, start=1):
            await store.append(to_new_events(stream_id, version, [data], _META, at_ms))


def _pilot(database_url: str, nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # The command reads PostgreSQL only; the stack is found through the environment.
    env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_url}
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "pilot", "report", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )  # fmt: skip


async def test_pilot_report_over_the_projections_of_a_real_log(
    store: PostgresEventStore, database_url: str, nats_url: str, tmp_path: Path
) -> None:
    # Received an hour ago, so the one-day window ending when the command runs holds it all.
    start_ms = time.time_ns() // 1_000_000 - 3_600_000
    stories: list[Story] = _workload(start_ms)
    recon = [
        *recon_typed("eu-lnd", "k1", found_at_ms=start_ms + 1_000,
                     resolved_at_ms=start_ms + 61_000),
        *recon_typed("eu-lnd", "k2", found_at_ms=start_ms + 2_000),
    ]  # fmt: skip
    await _write(store, {**{s.intent_id: s.typed for s in stories}, "reconciliation-eu-lnd": recon})
    exact = tmp_path / "exact.toml"
    exact.write_text(_toml(AT_THE_FIGURES))

    shown = _pilot(database_url, nats_url, "--window", "1d", "--windows", "1", "--corridor",
                   "us-eu", "--thresholds", str(exact), "--json")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    (corridor,) = report["corridors"]
    assert (report["verdict"], corridor["verdict"], report["thresholds_version"]) == ("go", "go", 7)
    (window,) = corridor["windows"]
    assert window["figures"]["intents"] == 6
    assert window["figures"]["reconciliation_time_ms"]["open"] == 1

    # The demo's report over the same log, folded from the events themselves.
    recorded = []
    async for batch in store.pages():
        recorded += [
            {"type": e.type, "version": e.schema_version, "stream_id": e.stream_id,
             "recorded_at_ms": e.recorded_at_ms, "data": e.payload}
            for e in batch
        ]  # fmt: skip
    assert_same_figures(build_pilot_metrics(recorded), report["all_corridors"][0])

    # The shipped thresholds over two windows: the earlier one is empty, so no-go, exit 4.
    shown = _pilot(database_url, nats_url, "--window", "1d")
    assert shown.returncode == 4, shown.stderr
    assert "window 1: min_intents" in shown.stdout
    assert shown.stdout.rstrip().splitlines()[-1].startswith("Verdict: no-go")

    refused = _pilot(database_url, nats_url, "--window", "1w", "--json")
    assert refused.returncode == 2
    assert json.loads(refused.stdout)["error"] == {
        "code": "invalid_window", "field": "window", "limit": None,
        "message": "'1w' is not a window: a number of hours or days, e.g. 36h or 7d",
    }  # fmt: skip
    assert _pilot(database_url, nats_url, "--window", "91d").returncode == 2
