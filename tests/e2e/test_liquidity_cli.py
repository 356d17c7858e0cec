"""`corridor liquidity` and `corridor liquidity plan` against `corridor up` with the simulator,
and the same figures on the console's API and on `/metrics` (ADR 0240, 0241, 0243)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import run_cli
from tests.e2e.test_first_payment import stack_with_sim  # noqa: F401
from tests.e2e.test_loop_probes import _ready_within, _serving, _stop
from tests.e2e.test_metrics import scrape

DEADLINE_S = 30.0
# A target no region meets: every region raises inbound_low, in every window onto liquidity.
INBOUND_MIN_MSAT = 10**15


@pytest.fixture(autouse=True)
def _inbound_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRIDOR_LIQUIDITY_INBOUND_MIN_MSAT", str(INBOUND_MIN_MSAT))


def _json(*args: str) -> Any:
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_liquidity_shows_every_channel_of_our_nodes_per_region(
    stack_with_sim: Path,  # noqa: F811
) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    view = _json("liquidity", *sd)
    assert view["missing"] == [], view["missing"]
    ours = [n for n in _json("sim", "nodes", *sd) if n["role"] == "ours"]
    corridor_nodes = {(n["region"], n["node"]) for n in view["nodes"]}
    assert corridor_nodes <= {(n["region"], n["name"]) for n in ours}
    assert {r["region"] for r in view["regions"]} == {"us", "eu", "asia"}
    for region in view["regions"]:
        assert region["channels"] > 0 and region["outbound_msat"] > 0 and not region["stale"]
        rows = [c for c in view["channels"] if c["region"] == region["region"] and c["active"]]
        assert region["outbound_msat"] == sum(c["local_balance_msat"] for c in rows)
    assert all(len(c["peer_pubkey"]) == 66 for c in view["channels"])
    assert all(n["node_pubkey"] for n in view["nodes"])
    assert {(a["region"], a["kind"]) for a in view["alerts"]} == {
        (r, "inbound_low") for r in ("us", "eu", "asia")
    }

    # A dry run records its proposals (ADR 0246) and requests nothing.
    planned = _json("liquidity", "plan", *sd)
    assert planned["mode"] == "dry_run"
    assert all(r["ok"] and r["state"] == "proposed" for r in planned["recorded"]), planned

    http_url = json.loads((stack_with_sim / "endpoints.json").read_text())["http_url"]
    key = (stack_with_sim / "auth" / "operator-operator-1.nk.http").read_text().strip()
    deadline = time.monotonic() + DEADLINE_S
    while True:  # the gateway hears snapshots from its start: one interval at most
        request = urllib.request.Request(
            f"{http_url}/v1/console/liquidity", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            console = json.loads(response.read())
        if {r["region"] for r in console["regions"]} == {"us", "eu", "asia"}:
            break
        assert time.monotonic() < deadline, console["regions"]
        time.sleep(0.2)
    assert {c["channel_id"] for c in console["channels"]} == {
        c["channel_id"] for c in view["channels"]
    }
    request = urllib.request.Request(
        f"{http_url}/v1/exceptions", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        queue = json.loads(response.read())["exceptions"]
    assert {(r["region"], r["kind"]) for r in queue if r["kind"].startswith("liquidity:")} == {
        (r, "liquidity:inbound_low") for r in ("us", "eu", "asia")
    }
    # The CLI's queue shows the same alerts as the API's (ADR 0238).
    cli_queue = _json("exceptions", *sd)
    assert {(r["region"], r["kind"]) for r in cli_queue if r["kind"].startswith("liquidity:")} == {
        (r, "liquidity:inbound_low") for r in ("us", "eu", "asia")
    }
    assert "liquidity:inbound_low" in run_cli("exceptions", *sd).stdout

    metrics_url = json.loads((stack_with_sim / "endpoints.json").read_text())["metrics_url"]
    series = scrape(metrics_url)
    outbound = {dict(labels)["region"]: v for (name, labels), v in series.items()
                if name == "corridor_region_outbound_msat"}  # fmt: skip
    assert set(outbound) == {"us", "eu", "asia"} and all(v > 0 for v in outbound.values())
    ratios = [name for (name, _) in series if name == "corridor_region_local_ratio_ppm"]
    assert len(ratios) == 3
    alerts = {dict(labels)["region"] for (name, labels), v in series.items()
              if name == "corridor_liquidity_alerts" and dict(labels)["kind"] == "inbound_low"
              and v == 1}  # fmt: skip
    assert alerts == {"us", "eu", "asia"}

    # The planner's loop mode serves the probes of a loop (ADR 0153) once a round finished.
    planner, planner_url = _serving("liquidity", "plan", *sd, "--every", "1")
    try:
        _ready_within(planner, planner_url)
    finally:
        _stop(planner)
