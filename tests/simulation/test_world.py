"""The whole-engine simulation (ADR 0100): the production graph on virtual time, replayable by
seed, and an engine broken on purpose is caught by the invariant it breaks.

Each broken engine is the production code with one part replaced by ``monkeypatch`` for the
length of the test: the world itself has no switch for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import msgspec
import pytest

from services import bootstrap as bootstrap_module
from services.engine.intent_cache import IntentCache
from services.engine.spend_sync import SpendSync
from services.eventstore import memory as memory_store
from services.lightning import sim_direct
from services.relay.outbox import OutboxRelay
from services.simulation import invariants as inv
from services.simulation import world
from services.simulation.world import run_world

SPEND_SEED = 11
STEPS = 20  # enough traffic to settle dozens of intents, short enough for many tests


def _invariants(result: world.WorldResult) -> set[str]:
    return {v.invariant for v in result.violations}


def test_a_seed_runs_the_production_graph_and_breaks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[Any] = []
    real = bootstrap_module.bootstrap

    async def spy(*args: Any, **kwargs: Any) -> Any:
        engine = await real(*args, **kwargs)
        built.append(engine)
        return engine

    monkeypatch.setattr(world, "bootstrap", spy)
    result = run_world(3, steps=STEPS, engines=2)
    assert result.violations == []
    assert len(built) >= 2 and all(e.nc is None for e in built)  # the twins, not NATS
    assert result.intents > 10 and result.settled > 0 and result.log_hash


def test_the_same_seed_gives_the_same_log_and_trace_and_another_does_not() -> None:
    first, again, other = (run_world(s, steps=STEPS) for s in (4, 4, 5))
    assert (first.log_hash, first.trace, first.plan) == (again.log_hash, again.trace, again.plan)
    assert first.log_hash != other.log_hash


def test_a_seed_replays_exactly_in_another_process_with_other_string_hashing() -> None:
    script = (
        "import logging, structlog\n"
        "structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))\n"
        "from services.simulation.world import run_world\n"
        f"print(run_world(6, steps={STEPS}).log_hash)\n"
    )
    heads = {
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout.strip()
        for h in (1, 2)
    }  # fmt: skip
    assert len(heads) == 1 and len(next(iter(heads))) == 64


def test_a_relay_that_never_publishes_leaves_intents_not_at_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def idle(self: OutboxRelay) -> None:
        return None

    monkeypatch.setattr(OutboxRelay, "run", idle)
    result = run_world(7, steps=STEPS)
    assert inv.AT_REST in _invariants(result)


def test_a_node_adapter_that_reports_a_lower_fee_breaks_value_conservation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    honest = sim_direct.result_of

    def skimming(payment: Any) -> Any:
        result = honest(payment)
        if getattr(result, "fee_msat", 0) > 0:
            return msgspec.structs.replace(result, fee_msat=result.fee_msat - 1)
        return result

    monkeypatch.setattr(sim_direct, "result_of", skimming)
    result = run_world(8, steps=STEPS)
    assert inv.VALUE_CONSERVED in _invariants(result)


def test_an_engine_whose_cache_drifts_from_its_log_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remember = IntentCache.remember

    def drifting(self: IntentCache, stream_id: str, state: Any) -> None:
        if state is not None and state.status == "settled":
            state = msgspec.structs.replace(state, fee_msat=(state.fee_msat or 0) + 1)
        remember(self, stream_id, state)

    monkeypatch.setattr(IntentCache, "remember", drifting)
    result = run_world(9, steps=STEPS)
    assert inv.REPLAY_EQUALS_STATES in _invariants(result)


def test_a_store_that_chains_one_event_wrongly_breaks_the_hash_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    honest = memory_store.chain_hash

    def broken(prev_hash: bytes, position: int, body: bytes) -> bytes:
        return honest(b"\x00" * 32 if position == 5 else prev_hash, position, body)

    monkeypatch.setattr(memory_store, "chain_hash", broken)
    result = run_world(10, steps=STEPS)
    assert inv.HASH_CHAIN in _invariants(result)


# Only the agent submits, below its approval tier and fast enough that what both engines
# dispatch passes its hourly window within a run (20,000,000 msat in the default policy).
_BIG_SPENDER = (("bot", "agent", 900_000, 1_000_000),)


def _spend_unfenced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spend check that reads stale state: no fence on the callers' spend at append, and no
    catch-up with what the other engine appended."""

    def no_fence(self: SpendSync, callers: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
        return (), ()

    async def no_catch_up(self: SpendSync, store: Any) -> int:
        return 0

    monkeypatch.setattr(SpendSync, "fence", no_fence)
    monkeypatch.setattr(SpendSync, "catch_up", no_catch_up)


@pytest.mark.parametrize("broken", [False, True], ids=["fenced", "stale"])
def test_two_engines_with_a_stale_spend_check_exceed_a_window_and_are_caught(
    monkeypatch: pytest.MonkeyPatch, broken: bool
) -> None:
    monkeypatch.setattr(world, "CALLERS", _BIG_SPENDER)
    if broken:
        _spend_unfenced(monkeypatch)
    result = run_world(SPEND_SEED, steps=STEPS, engines=2)
    assert (inv.SPEND_LIMITS in _invariants(result)) is broken


def test_receives_are_created_paid_from_outside_and_credited_once() -> None:
    result = run_world(3, steps=STEPS)
    assert result.violations == []
    assert result.receives > 5 and 0 < result.receives_paid <= result.receives


def test_a_settlement_follower_that_reports_nothing_leaves_paid_receives_uncredited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.executor.invoice_follower import InvoiceFollower
    from services.simulation.receives import RECEIVE_PAID_IS_CREDITED

    async def deaf(self: InvoiceFollower, update: Any) -> None:
        return None

    monkeypatch.setattr(InvoiceFollower, "_settled", deaf)
    result = run_world(3, steps=STEPS)
    assert RECEIVE_PAID_IS_CREDITED in _invariants(result)


def test_an_executor_that_reports_more_than_the_node_received_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.executor import invoice_follower, invoice_reports
    from services.simulation.receives import RECEIVE_CREDIT_MATCHES_NODE

    honest = invoice_reports.paid_report

    def inflated(*args: Any) -> Any:
        report = honest(*args)
        return msgspec.structs.replace(
            report, amount_received_msat=(report.amount_received_msat or 0) + 1
        )

    monkeypatch.setattr(invoice_follower, "paid_report", inflated)
    monkeypatch.setattr(invoice_reports, "paid_report", inflated)  # ended_report calls it
    result = run_world(3, steps=STEPS)
    assert RECEIVE_CREDIT_MATCHES_NODE in _invariants(result)
