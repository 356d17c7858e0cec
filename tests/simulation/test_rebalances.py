"""Rebalances in the whole-engine simulation (ADR 0282): moves between our nodes under the
world's faults, each paid at most once on the network's ledger and within the day's budget;
and an executor broken on purpose is caught by the invariant it breaks."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import random
from typing import Any

import pytest

from services.executor import rebalance_worker, target
from services.executor.keysend import keysend_preimage
from services.executor.rebalance_worker import is_rebalance_order
from services.executor.worker import Executor
from services.simulation import rebalances as rbl
from services.simulation.world import WorldResult, run_world

STEPS = 20


def _invariants(result: WorldResult) -> set[str]:
    return {v.invariant for v in result.violations}


def test_rebalances_are_requested_paid_once_and_kept_within_the_budget() -> None:
    result = run_world(3, steps=STEPS)
    assert result.violations == []
    assert result.rebalances > 3 and 0 < result.rebalances_succeeded <= result.rebalances


def _delivered_twice_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rebalance order is handled twice concurrently, as a redelivery racing the first
    delivery (an ack lost while the node pays)."""
    handle = Executor._handle

    async def twice(self: Executor, msg: Any) -> None:
        if is_rebalance_order(msg.data):
            await asyncio.gather(handle(self, msg), handle(self, msg))
        else:
            await handle(self, msg)

    monkeypatch.setattr(Executor, "_handle", twice)


def _preimage_randomised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebalance's preimage no longer derived from its id: a second delivery cannot find the
    first one's payment on the node, and pays again under a new hash."""
    draws = random.Random("broken-preimage")

    def randomised(secret: bytes, intent_id: str, attempt: int) -> tuple[str, str]:
        if not intent_id.startswith("rbl-"):
            return keysend_preimage(secret, intent_id, attempt)
        preimage = draws.getrandbits(256).to_bytes(32, "big")
        return preimage.hex(), hashlib.sha256(preimage).hexdigest()

    monkeypatch.setattr(target, "keysend_preimage", randomised)
    monkeypatch.setattr(rebalance_worker, "keysend_preimage", randomised)


@pytest.mark.parametrize("broken", [False, True], ids=["derived", "randomised"])
def test_a_rebalance_order_delivered_twice_pays_once_unless_its_preimage_is_random(
    monkeypatch: pytest.MonkeyPatch, broken: bool
) -> None:
    _delivered_twice_at_once(monkeypatch)
    if broken:
        _preimage_randomised(monkeypatch)
    result = run_world(3, steps=STEPS)
    assert result.rebalances_succeeded > 0
    if broken:
        assert rbl.REBALANCE_PAID_ONCE in _invariants(result)
    else:
        assert result.violations == []


def _deaf_to_rebalances(monkeypatch: pytest.MonkeyPatch) -> None:
    """Executors take rebalance orders and never pay nor report them."""
    handle = Executor._handle

    async def deaf(self: Executor, msg: Any) -> None:
        if is_rebalance_order(msg.data):
            await msg.ack()
        else:
            await handle(self, msg)

    monkeypatch.setattr(Executor, "_handle", deaf)


def test_an_executor_that_drops_rebalance_orders_leaves_them_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _deaf_to_rebalances(monkeypatch)
    result = run_world(3, steps=STEPS)
    assert rbl.REBALANCE_AT_REST in _invariants(result)
    assert result.rebalances_succeeded == 0


@pytest.mark.parametrize("broken", [False, True], ids=["judged", "forgotten"])
def test_an_engine_that_forgets_the_day_s_budget_is_caught(
    monkeypatch: pytest.MonkeyPatch, broken: bool
) -> None:
    """Moves stay open (their executors are deaf), so each holds its whole max fee: two of
    these fees pass a day's 100,000 msat, and only the engine's judgment keeps them apart."""
    _deaf_to_rebalances(monkeypatch)
    monkeypatch.setattr(rbl, "MAX_FEE_MSAT_MIN", 60_000)
    monkeypatch.setattr(rbl, "MAX_FEE_MSAT_MAX", 90_000)
    if broken:
        decide = importlib.import_module("services.domain.rebalance.decide")
        monkeypatch.setattr(decide, "_budget_refusal", lambda *args: None)
    result = run_world(3, steps=STEPS)
    assert (rbl.REBALANCE_BUDGET_HOLDS in _invariants(result)) is broken
