"""`corridor bench --quick` runs and its JSON has every figure. No timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_runs_and_reports_every_field(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    # Its own servers and credentials: none of the session's (ADR 0060).
    unset = ("NATS_URL", "DATABASE_URL", "CORRIDOR_CREDS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "bench", "--quick", "--runs", "1",
         "--intents", "60", "--out", str(out), "--profile", str(tmp_path / "profile")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("pg_single_rows_per_s", "pg_batched_rows_per_s", "js_sync_msgs_per_s",
                "js_pipelined_msgs_per_s", "js_atomic_batched_msgs_per_s"):  # fmt: skip
        assert result["baselines"][key]["median"] > 0
    for key in ("append_single_events_per_s", "append_batched_events_per_s",
                "replay_events_per_s"):  # fmt: skip
        assert result["event_store"][key]["median"] > 0
    assert result["end_to_end"]["settled_intents_per_s"]["median"] > 0
    assert result["simulated_network"]["payments_per_s"]["median"] > 0
    for part in ("simulated_network", "lnd_adapter"):
        assert result["simulated_network"]["cpu_ms_per_payment"][part]["median"] > 0
    assert result["ratios"]["e2e_intents_vs_simulated_network_payments"] > 0
    for pacing in ("back_to_back", "paced"):
        for part in ("nats_round_trip", "pg_commit", "js_publish"):
            assert result["baselines"]["one_at_a_time_latency_ms"][pacing][part]["p50"] > 0
        assert result["simulated_network"]["one_at_a_time_latency_ms"][pacing]["p95"] > 0
        floor = result["latency_floor_ms"][pacing]
        assert 0 < floor["p50"] <= floor["p95"]
    half, low = result["latency_at_half_saturation"], result["latency_at_low_load"]
    assert {"p50_ms", "p95_ms", "p99_ms", "stages_ms", "cost_per_intent"} <= set(half)
    assert {"p50_ms", "p95_ms", "p99_ms", "stages_ms"} <= set(low)
    assert {"p50_ms", "p95_ms", "p99_ms", "stages_ms"} <= set(
        result["latency_at_quarter_saturation"]
    )
    assert set(half["stages_ms"]) == {
        "submit_to_received", "received_to_payment_reported", "payment_reported_to_seen",
    }  # fmt: skip
    assert set(half["cost_per_intent"]["runqueue_wait_ms_by_process"]) == set(
        half["cost_per_intent"]["cpu_ms_by_process"]
    )
    assert set(half["cost_per_intent"]["wakeups_by_process"]) == set(
        half["cost_per_intent"]["cpu_ms_by_process"]
    )
    assert "runqueue_wait_ms_by_process" in result["cost_per_intent"]
    assert "wakeups_by_process" in result["cost_per_intent"]
    assert result["cost_per_intent"]["intents_per_cpu_s"] > 0
    assert (
        0
        < result["cost_per_intent"]["cpu_ms_without_simulated_network"]
        < result["cost_per_intent"]["cpu_ms_total"]
    )
    assert "end to end: saturation run 1/1" in proc.stderr  # progress lines
    # Each process has a profile, or the reason it has none (py-spy needs ptrace rights).
    summary = (tmp_path / "profile" / "summary.txt").read_text()
    for process in ("engine", "simulated_network", "executors_and_load"):
        assert f"== {process}: " in summary
    assert set(result["cost_per_intent"]["cpu_ms_by_process"]) == {
        "engine", "simulated_network", "executors_and_load", "nats_server", "postgres",
    }  # fmt: skip
    assert result["memory"]["engine_peak_rss_mib"] > 0
    assert "steal_pct_during_run" in result["machine"]
    assert {"events", "db_transactions", "nats_messages_in"} <= set(result["cost_per_intent"])
    assert set(result["targets"]) == {
        "settled_intents_per_s", "e2e_append_vs_batched_baseline",
        "latency_p95_ms_at_half_saturation", "replay_events_per_s",
        "append_batched_events_per_s", "engine_peak_rss_mib",
    }  # fmt: skip
    assert "target" in proc.stdout
