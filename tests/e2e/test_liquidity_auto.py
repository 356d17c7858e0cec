"""`corridor liquidity plan --auto` against `corridor up`: a region below its target gets a
rebalance intent through a corridor pinned to the source region, which settles; planning the
same round again is the same intent, never a second payment (ADR 0242, 0243)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from services.settings import DEFAULT_CORRIDORS
from tests.e2e.test_cli import run_cli
from tests.e2e.test_first_payment import stack_with_sim  # noqa: F401

DEADLINE_S = 30.0


@pytest.fixture(autouse=True)
def _asia_needs_outbound(monkeypatch: pytest.MonkeyPatch) -> None:
    # eu-asia (a corridor of the default policy) pays from eu only: the rebalance corridor.
    corridors = dict(DEFAULT_CORRIDORS) | {"eu-asia": ["eu/eu-lnd"]}
    monkeypatch.setenv("CORRIDOR_CORRIDORS", json.dumps(corridors))
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


def test_auto_mode_submits_an_explained_rebalance_once(stack_with_sim: Path) -> None:  # noqa: F811
    sd = ["--state-dir", str(stack_with_sim)]
    dry = _json("liquidity", "plan", *sd)
    (proposal,) = dry["proposals"]
    assert (proposal["source_region"], proposal["target_region"]) == ("eu", "asia")
    assert dry["submitted"] == []

    auto = _json("liquidity", "plan", "--auto", *sd)
    (submitted,) = auto["submitted"]
    assert submitted["ok"], submitted
    intent_id = submitted["intent_id"]
    deadline = time.monotonic() + DEADLINE_S
    while (state := _json("get", *sd, intent_id)["state"]) != "settled":
        assert state not in ("failed", "rejected", "cancelled", "expired"), state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    shown = _json("get", *sd, intent_id)
    received = next(e for e in shown["events"] if e["type"] == "IntentReceived")
    assert received["data"]["metadata"]["purpose"] == "rebalance"
    assert received["data"]["metadata"]["reason"] == "local_ratio_low"
    assert received["data"]["corridor"] == "eu-asia"

    settled = next(e for e in shown["events"] if e["type"] == "IntentSettled")
    again = _json("liquidity", "plan", "--auto", *sd)
    # Today's budget counts the settled move's fee, under the caller that submitted it.
    assert again["caller_id"] == auto["caller_id"] == received["data"]["caller"]["id"]
    assert again["spent_today_msat"] == {"eu": settled["data"]["fee_msat"]}
    # The same pair in the same round window: the same intent, or (the figures moved, so the
    # move differs) refused by the engine; never a second move.
    (second,) = again["submitted"]
    assert second["idempotency_key"] == submitted["idempotency_key"]
    assert second.get("intent_id") == intent_id or (
        second["error"]["code"] == "idempotency_mismatch"
    ), second
