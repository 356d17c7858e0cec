"""``corridor drill``: what it refuses before it touches a stack, and how a report judges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import exit_codes
from services.cli.main import main
from services.drills.report import DrillReport
from services.drills.target import TargetError, find_target


def test_no_stack_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["drill", "backup-restore", "--state-dir", str(tmp_path)])
    assert code == exit_codes.USAGE
    assert "no running stack" in capsys.readouterr().err


def test_intents_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    for argv in (["backup-restore", "--intents", "0"], ["region-failover", "--intents", "-1"],
                 ["backup-restore", "--intents", "5", "--backup-after", "6"],
                 ["region-failover", "--deadline-s", "0"]):  # fmt: skip
        assert main(["drill", *argv, "--state-dir", str(tmp_path)]) == exit_codes.USAGE, argv


def test_a_stack_without_the_simulated_network_is_refused(tmp_path: Path) -> None:
    (tmp_path / "endpoints.json").write_text(
        json.dumps({"nats_url": "nats://127.0.0.1:1", "database_url": "postgresql://x@h/db"})
    )
    with pytest.raises(TargetError, match="no simulated network"):
        find_target(tmp_path, None, creds=None, caller_id=None, corridor="us-eu")


def test_a_report_passes_only_when_it_has_checks_and_all_hold() -> None:
    assert not DrillReport("d").passed  # a drill that checked nothing proved nothing
    report = DrillReport("d", checks={"a": True, "b": True})
    assert report.passed and report.exit_code() == exit_codes.OK
    report.checks["c"] = False
    assert report.exit_code() == exit_codes.VERIFICATION_FAILED
    assert report.to_json()["passed"] is False
