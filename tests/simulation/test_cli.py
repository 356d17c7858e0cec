"""``python -m services.simulation``: the report's shape, and exit 1 on a violation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.simulation import __main__ as cli
from services.simulation import invariants as inv
from services.simulation import world


def test_a_clean_run_reports_seeds_faults_and_intents(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    assert cli.main(["--seeds", "3", "--seed", "5", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["seeds"] == 3 and report["violations"] == []
    assert report["intents"] > 0 and report["seeds_per_s"] > 0
    assert sum(report["faults_injected"].values()) > 0


def test_a_violation_prints_the_seed_and_schedule_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def paid_twice(payments: object, events: object) -> list[inv.Violation]:
        return [inv.Violation(inv.NO_HASH_PAID_TWICE, "two succeeded payments", "ab" * 32)]

    monkeypatch.setattr(world.invariants, "check_network", paid_twice)
    out = tmp_path / "sim.json"
    assert cli.main(["--seeds", "1", "--seed", "7", "--json", str(out)]) == 1
    [violation] = json.loads(out.read_text())["violations"]
    assert violation["seed"] == 7 and violation["invariant"] == inv.NO_HASH_PAID_TWICE
    assert violation["schedule"].startswith("seed 7: ") and violation["step"] > 0
    assert "seed 7: 1 violations" in capsys.readouterr().err


def test_a_violation_midway_names_the_step_it_was_seen_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_chain(events: object) -> list[inv.Violation]:
        return [inv.Violation(inv.HASH_CHAIN, "hash does not match", "1")]

    monkeypatch.setattr(world.invariants, "hash_chain", broken_chain)
    out = tmp_path / "sim.json"
    assert cli.main(["--seeds", "1", "--seed", "2", "--json", str(out)]) == 1
    steps = [v["step"] for v in json.loads(out.read_text())["violations"]]
    assert steps[: world.STEPS // world.CHECK_EVERY] == list(
        range(world.CHECK_EVERY - 1, world.STEPS, world.CHECK_EVERY)
    )


def test_corridor_simulate_runs_the_same_simulation(tmp_path: Path) -> None:
    """``corridor simulate`` (what ``make sim`` calls) gives the report the module gives."""
    from services.cli.main import main as corridor

    via_cli, via_module = tmp_path / "cli.json", tmp_path / "module.json"
    assert corridor(["simulate", "--seeds", "2", "--seed", "9", "--json", str(via_cli)]) == 0
    assert cli.main(["--seeds", "2", "--seed", "9", "--json", str(via_module)]) == 0
    a, b = json.loads(via_cli.read_text()), json.loads(via_module.read_text())
    for report in (a, b):
        report.pop("seeds_per_s")
    assert a == b and a["seeds"] == 2
