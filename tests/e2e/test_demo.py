"""`corridor demo` end to end: the pilot report's contract, and no double payment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEYS = {"intents", "by_state", "settled", "latency_ms", "fee_rate_ppm_by_band",
        "route_failure_ratio", "auto_recovery_rate", "interventions_by_tier",
        "double_payments"}  # fmt: skip


def test_demo_reports_every_key_and_pays_nothing_twice(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "demo", "--seed", "3", "--intents", "80",
         "--json", str(report_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert set(report) >= KEYS
    assert report["intents"] == 80
    assert report["double_payments"] == 0
    assert report["paid_but_not_settled"] == []
    assert sum(report["by_state"].values()) == 80
    # Every intent reached a final state, and the network paid exactly the settled ones.
    assert set(report["by_state"]) <= {"settled", "failed", "rejected", "cancelled", "expired"}
    assert report["network_payments"]["succeeded"] == report["settled"]
    assert report["interventions_by_tier"]["approval"] > 0
    assert "Corridor pilot report" in proc.stdout
