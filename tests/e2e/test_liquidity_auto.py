"""`corridor liquidity plan --auto` against `corridor up`: a region below its target gets a
rebalance (an intent kind of its own, ADR 0244) with the planner's explanation, which succeeds;
the dry run before it is recorded as a proposal (ADR 0246); planning the same round again is
the same rebalance, never a second payment; today's budget is the engine's (ADR 0245)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import run_cli
from tests.e2e.test_first_payment import stack_with_sim  # noqa: F401

DEADLINE_S = 30.0


@pytest.fixture(autouse=True)
def _asia_needs_outbound(monkeypatch: pytest.MonkeyPatch) -> None:
    # A target asia cannot meet: it always wants outbound (one move per round at most).
    monkeypatch.setenv(
        "CORRIDOR_LIQUIDITY_TARGETS", json.dumps({"asia": {"local_ratio_min_ppm": 999_000}})
    )
    # A round window longer than the test: every round here shares the key.
    monkeypatch.setenv("CORRIDOR_LIQUIDITY_PLANNER_ROUND_S", "86400")


def _json(*args: str) -> Any:
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_auto_mode_requests_an_explained_rebalance_once(stack_with_sim: Path) -> None:  # noqa: F811
    sd = ["--state-dir", str(stack_with_sim)]
    dry = _json("liquidity", "plan", *sd)
    (proposal,) = dry["proposals"]
    source = proposal["source_region"]
    assert proposal["target_region"] == "asia" and source in ("us", "eu"), proposal
    (proposed,) = dry["recorded"]  # the dry run is in the log, nothing was sent
    assert proposed["ok"] and proposed["state"] == "proposed", proposed
    shown_proposal = _json("get", *sd, proposed["intent_id"])
    assert [e["type"] for e in shown_proposal["events"]] == ["RebalanceProposed"]

    auto = _json("liquidity", "plan", "--auto", *sd)
    (requested,) = auto["recorded"]
    assert requested["ok"], requested
    rebalance_id = requested["intent_id"]
    assert rebalance_id.startswith("rbl-")
    deadline = time.monotonic() + DEADLINE_S
    while (state := _json("get", *sd, rebalance_id)["state"]) != "succeeded":
        assert state not in ("failed", "rejected"), state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    shown = _json("get", *sd, rebalance_id)
    request = next(e for e in shown["events"] if e["type"] == "RebalanceRequested")
    assert request["data"]["explanation"]["reason"] == "local_ratio_low"
    assert (request["data"]["source_region"], request["data"]["target_region"]) == (source, "asia")
    succeeded = next(e for e in shown["events"] if e["type"] == "RebalanceSucceeded")
    again = _json("liquidity", "plan", "--auto", *sd)
    # Today's budget is the engine's budget stream of the source: the move's fee, spent.
    assert again["caller_id"] == auto["caller_id"] == request["data"]["caller"]["id"]
    assert again["spent_today_msat"][source] == succeeded["data"]["fee_msat"]
    # The same pair in the same round window: the same rebalance, or (the figures moved, so
    # the move differs) refused by the engine; never a second move.
    for second in again["recorded"]:
        if second["idempotency_key"] != requested["idempotency_key"]:
            continue  # another source this time: a move of its own
        assert second.get("intent_id") == rebalance_id or (
            second["error"]["code"] == "idempotency_mismatch"
        ), second
