"""The alert rules in deploy/prometheus (ADR 0153): promtool accepts them and their unit tests
pass (each alert fires on the series that should fire it, and not before), and every series a
rule names is one Corridor exposes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import NoReturn

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.executor.health import HealthBoard, HealthReport, health_subject
from services.identity.lookup import IndexedRegistry
from services.identity.registry import Credential, Registry
from services.metrics import series
from services.metrics.credentials import CredentialExpiryCollector
from services.metrics.engine_view import HealthBoardCollector
from services.metrics.sampled import ConsumerLag, Sample, SampledCollector

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "corridor-alerts.yml"
RULE_TESTS = RULES_DIR / "corridor-alerts.test.yml"
# README "System packages for tests": .ci/run installs Debian's `prometheus` for promtool.
DEBIAN_PACKAGE = "prometheus"


class RuleCheckNotRun(UserWarning):
    """promtool was not there to check the rules."""


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is not None:
        return found
    reason = f"promtool not found (Debian package {DEBIAN_PACKAGE!r}, installed by .ci/run)"
    if os.environ.get("CI", "").strip().lower() in {"true", "1"}:
        pytest.fail(f"alert rules cannot be checked under CI=true: {reason}")
    _skip_loudly(reason)


def _skip_loudly(reason: str) -> NoReturn:
    message = f"ALERT RULE CHECK NOT RUN: {reason}"
    warnings.warn(message, RuleCheckNotRun, stacklevel=2)
    pytest.skip(message)


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
        timeout=60, cwd=RULES_DIR, check=False,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def exposed_names() -> set[str]:
    """Every sample name Corridor's collectors expose, each with data in it."""
    registry = CollectorRegistry()
    board = HealthBoard(nodes=[("eu", "eu-lnd")], interval_ms=1000)
    report = HealthReport(
        node="eu-lnd", region="eu", healthy=True, outbound_msat=1, inbound_msat=1, channels=1,
        observed_at_ms=1, executor_id="x",
    )  # fmt: skip
    board.observe(health_subject("eu", "eu-lnd"), report, received_at_ms=1)
    registry.register(HealthBoardCollector(board, now_ms=lambda: 2))
    sampled = SampledCollector(pool=None, stuck_after_s=1, now_ms=lambda: 2)  # type: ignore[arg-type]
    sampled.sample = Sample(
        at_ms=1, intents_by_state={"settled": 1}, exceptions_by_kind={"in_doubt": 1},
        projection_lag={"intents": 0}, mismatches_found={"amount_mismatch": 1},
        mismatches_open={"amount_mismatch": 1}, breakers={("us", "us-lnd"): 1},
        consumers=[ConsumerLag("executor-us-lnd", 0, 0, 1)],
    )  # fmt: skip
    registry.register(sampled)
    expiring = Credential(id="acme", role="caller", public_key="U" + "A" * 55, kind="service",
                          expires_at_ms=10**13)  # fmt: skip
    registry.register(CredentialExpiryCollector(IndexedRegistry(Registry(credentials=(expiring,)))))
    for metric in (series.INTENT_EVENTS, series.SETTLEMENT_LATENCY, series.EXECUTOR_PAYMENTS,
                   series.WEBHOOK_DELIVERIES):  # fmt: skip
        registry.register(metric)
    series.WEBHOOK_DELIVERIES.labels("failed")
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_series_a_rule_names_is_exposed() -> None:
    exposed = exposed_names()
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    named = {n for rule in rules for n in re.findall(r"\bcorridor_[a-z_]+", rule["expr"])}
    assert named and named <= exposed, sorted(named - exposed)
    assert all(name.startswith("corridor_") for name in exposed if "corridor" in name)
