"""`/metrics`, `/healthz` and `/readyz` of `corridor up` with the simulator (ADR 0153): after a
payment settles, the named `corridor_*` series are there with the figures the log implies."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_cli import run_cli
from tests.e2e.test_first_payment import _cli_json, _invoice, stack_with_sim  # noqa: F401

AMOUNT_MSAT = 50_000
DEADLINE_S = 30.0


@pytest.fixture(autouse=True)
def _sample_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack samples every second here (30 s by default), so the test waits little."""
    monkeypatch.setenv("CORRIDOR_METRICS_SAMPLE_S", "1")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_show_a_settled_payment(stack_with_sim: Path) -> None:  # noqa: F811
    sd = ["--state-dir", str(stack_with_sim)]
    url = json.loads((stack_with_sim / "endpoints.json").read_text())["metrics_url"]
    assert get(f"{url}/healthz") == (200, "ok\n")
    submitted = run_cli(
        "submit", *sd, "--caller-id", "local", "--idempotency-key", "metrics-1",
        "--amount-msat", str(AMOUNT_MSAT), "--payment-request", _invoice(sd, AMOUNT_MSAT),
        "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    intent_id = json.loads(submitted.stdout)["intent_id"]

    deadline = time.monotonic() + DEADLINE_S
    while True:  # the sampler reads the read models every few seconds
        series = scrape(url)
        # Settled in the read model, and the relay's saved position and the projections at
        # the head (the relay saves its position lazily, after it has published).
        if (
            series.get(("corridor_intents", (("state", "settled"),))) == 1
            and series.get(("corridor_relay_lag_events", ())) == 0
            and series.get(("corridor_projection_lag_events", (("projection", "intents"),))) == 0
        ):
            break
        assert time.monotonic() < deadline, {k: v for k, v in series.items() if "intents" in k[0]}
        time.sleep(0.2)
    assert _cli_json("get", *sd, intent_id)["state"] == "settled"
    assert series[("corridor_intent_events_total", (("type", "IntentSettled"),))] == 1
    latency = [v for (name, labels), v in series.items()
               if name == "corridor_settlement_latency_seconds_count"]  # fmt: skip
    assert latency == [1]
    assert series[("corridor_relay_lag_events", ())] == 0
    assert series[("corridor_projection_lag_events", (("projection", "intents"),))] == 0
    nodes = {dict(labels)["node"] for (name, labels) in series if name == "corridor_node_healthy"}
    assert "us-lnd" in nodes or "eu-lnd" in nodes
    consumers = [k for k in series if k[0] == "corridor_executor_consumer_waiting"]
    assert consumers, "every executor's durable consumer is listed"
    assert series[("corridor_metrics_sample_age_seconds", ())] < 30
    status, body = get(f"{url}/readyz")
    assert (status, body) == (200, "ready\n")
    assert get(f"{url}/nope")[0] == 404
    # The HTTP API serves the same registry, without a key.
    http_url = json.loads((stack_with_sim / "endpoints.json").read_text())["http_url"]
    status, text = get(f"{http_url}/metrics")
    assert status == 200 and 'corridor_intents{state="settled"} 1.0' in text
