"""The spend ledger: properties under random reserve/release/settle/time sequences, and the fold
from payment intent events."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from schemas import events as ev
from schemas.common import Caller
from services.domain.policy import SpendBook, SpendLedger, WindowLimit, apply_intent_event
from services.domain.policy.spend_fold import fold_intent_events

T0_MS = 1_700_000_000_000
HOUR_MS = 3_600_000
LIMITS = (WindowLimit(window_ms=HOUR_MS, limit_msat=100_000), WindowLimit(24 * HOUR_MS, 250_000))
CALLERS = ("a", "b")


class LedgerMachine(RuleBasedStateMachine):
    """Drives the ledger with checked reservations and compares it against a list model."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = SpendLedger()
        self.now_ms = T0_MS
        self.next_id = 0
        # Model: intent id -> (caller, amount, reserved_at) while open; settled as a list.
        self.open: dict[str, tuple[str, int]] = {}
        self.settled: list[tuple[str, int, int]] = []  # (caller, amount, settled_at)

    def _model_used(self, caller: str, window_ms: int) -> int:
        return sum(a for c, a in self.open.values() if c == caller) + sum(
            a for c, a, at in self.settled if c == caller and at > self.now_ms - window_ms
        )

    @rule(caller=st.sampled_from(CALLERS), amount=st.integers(0, 120_000))
    def reserve(self, caller: str, amount: int) -> None:
        intent_id = f"i{self.next_id}"
        self.next_id += 1
        fits = all(self._model_used(caller, w.window_ms) + amount <= w.limit_msat for w in LIMITS)
        after = self.ledger.try_reserve(
            intent_id, caller_id=caller, amount_msat=amount, at_ms=self.now_ms, limits=LIMITS
        )
        assert (after is not None) == fits
        if after is not None:
            self.ledger = after
            self.open[intent_id] = (caller, amount)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        intent_id = data.draw(st.sampled_from(sorted(self.open)))
        self.ledger = self.ledger.release(intent_id)
        del self.open[intent_id]

    @precondition(lambda self: self.open)
    @rule(data=st.data(), fee_share=st.floats(0, 1))
    def settle(self, data: st.DataObject, fee_share: float) -> None:
        intent_id = data.draw(st.sampled_from(sorted(self.open)))
        caller, reserved = self.open.pop(intent_id)
        actual = int(reserved * fee_share)  # the actual total never exceeds the reservation
        self.ledger = self.ledger.settle(intent_id, amount_msat=actual, at_ms=self.now_ms)
        self.settled.append((caller, actual, self.now_ms))

    @rule(ms=st.sampled_from([0, 1, 60_000, HOUR_MS - 1, HOUR_MS, 5 * HOUR_MS, 24 * HOUR_MS]))
    def time_passes(self, ms: int) -> None:
        self.now_ms += ms

    @rule()
    def prune(self) -> None:
        self.ledger = self.ledger.pruned(now_ms=self.now_ms, horizon_ms=24 * HOUR_MS)

    @invariant()
    def never_over_any_limit(self) -> None:
        for caller in CALLERS:
            for limit in LIMITS:
                used = self.ledger.used_msat(caller, window_ms=limit.window_ms, now_ms=self.now_ms)
                assert used <= limit.limit_msat
                assert used == self._model_used(caller, limit.window_ms)


TestLedgerMachine = LedgerMachine.TestCase


@st.composite
def ledgers(draw: st.DrawFn) -> SpendLedger:
    ledger = SpendLedger()
    for n in range(draw(st.integers(0, 8))):
        caller = draw(st.sampled_from(CALLERS))
        at_ms = T0_MS + draw(st.integers(0, 2 * HOUR_MS))
        ledger = ledger.reserve(f"r{n}", caller_id=caller, amount_msat=draw(st.integers(0, 10**6)),
                                at_ms=at_ms)  # fmt: skip
        if draw(st.booleans()):
            ledger = ledger.settle(f"r{n}", amount_msat=draw(st.integers(0, 10**6)), at_ms=at_ms)
    return ledger


@given(ledger=ledgers(), amount=st.integers(0, 10**9), offset_ms=st.integers(0, 48 * HOUR_MS))
def test_release_restores_the_budget(ledger: SpendLedger, amount: int, offset_ms: int) -> None:
    now_ms = T0_MS + offset_ms
    before = ledger.window_uses("a", LIMITS, now_ms=now_ms)
    reserved = ledger.reserve("new", caller_id="a", amount_msat=amount, at_ms=now_ms)
    assert [u.used_msat for u in reserved.window_uses("a", LIMITS, now_ms=now_ms)] == [
        u.used_msat + amount for u in before
    ]
    assert reserved.release("new").window_uses("a", LIMITS, now_ms=now_ms) == before
    assert reserved.release("new") == ledger


@given(amount=st.integers(1, 10**9), window_ms=st.integers(1, 48 * HOUR_MS))
def test_a_settlement_counts_until_it_leaves_the_window(amount: int, window_ms: int) -> None:
    ledger = SpendLedger().reserve("x", caller_id="a", amount_msat=amount, at_ms=T0_MS)
    ledger = ledger.settle("x", amount_msat=amount, at_ms=T0_MS + 5)

    def used(now_ms: int) -> int:
        return ledger.used_msat("a", window_ms=window_ms, now_ms=now_ms)

    assert used(T0_MS + 5) == amount
    assert used(T0_MS + 5 + window_ms - 1) == amount
    assert used(T0_MS + 5 + window_ms) == 0
    assert ledger.used_msat("b", window_ms=window_ms, now_ms=T0_MS + 5) == 0


def test_an_open_reservation_counts_however_old() -> None:
    ledger = SpendLedger().reserve("x", caller_id="a", amount_msat=7, at_ms=T0_MS)
    assert ledger.used_msat("a", window_ms=HOUR_MS, now_ms=T0_MS + 100 * HOUR_MS) == 7


@given(ledger=ledgers(), offset_ms=st.integers(0, 48 * HOUR_MS))
def test_pruning_changes_nothing_inside_the_horizon(ledger: SpendLedger, offset_ms: int) -> None:
    now_ms = T0_MS + offset_ms
    pruned = ledger.pruned(now_ms=now_ms, horizon_ms=24 * HOUR_MS)
    for caller in CALLERS:
        assert pruned.window_uses(caller, LIMITS, now_ms=now_ms) == ledger.window_uses(
            caller, LIMITS, now_ms=now_ms
        )


def test_reserving_twice_and_releasing_unknown_intents_change_nothing() -> None:
    ledger = SpendLedger().reserve("x", caller_id="a", amount_msat=5, at_ms=T0_MS)
    assert ledger.reserve("x", caller_id="a", amount_msat=99, at_ms=T0_MS + 1) == ledger
    assert ledger.release("nope") is ledger


# The fold from payment intent events.

DEST = "02" + "33" * 32


def _received(
    intent_id: str, amount_msat: int = 10_000, max_fee_msat: int = 100
) -> ev.IntentReceived:
    return ev.IntentReceived(
        intent_id=intent_id, caller=Caller(id="a", kind="agent"), idempotency_key=intent_id,
        corridor="us-eu", amount_msat=amount_msat, max_fee_msat=max_fee_msat, destination=DEST,
        received_at_ms=T0_MS, request_fingerprint="fp",
    )  # fmt: skip


def _dispatched(amount_msat: int = 10_000) -> ev.IntentDispatched:
    return ev.IntentDispatched(attempt=1, region="us", node="us-lnd", amount_msat=amount_msat,
                               max_fee_msat=100, destination=DEST, pay_timeout_s=60)  # fmt: skip


def _used(book: SpendBook, now_ms: int = T0_MS) -> int:
    return book.ledger.used_msat("a", window_ms=HOUR_MS, now_ms=now_ms)


def test_fold_reserves_on_policy_check_and_settles_the_actual_total() -> None:
    book = fold_intent_events(SpendBook(), "i", [
        _received("i"), ev.IntentPolicyChecked(tier="auto", policy_version=1),
    ], at_ms=T0_MS)  # fmt: skip
    assert _used(book) == 10_100  # amount plus fee budget
    book = fold_intent_events(book, "i", [_dispatched()], at_ms=T0_MS)
    assert _used(book) == 10_100  # dispatch of a reserved intent reserves nothing more
    settled = ev.IntentSettled(
        amount_msat=10_000, fee_msat=7, total_msat=10_007, preimage="00", fee_ppm=700
    )
    book = apply_intent_event(book, "i", settled, at_ms=T0_MS + 10)
    assert _used(book, T0_MS + 10) == 10_007
    assert _used(book, T0_MS + 10 + HOUR_MS) == 0
    assert book.ledger.last_paid_at_ms("a", DEST) == T0_MS + 10
    assert book.intents == {}


def test_fold_holds_no_budget_while_waiting_for_approval() -> None:
    book = fold_intent_events(SpendBook(), "i", [
        _received("i"), ev.IntentPolicyChecked(tier="approval", policy_version=1),
        ev.IntentApprovalRequested(approval_deadline_at_ms=None),
    ], at_ms=T0_MS)  # fmt: skip
    assert _used(book) == 0
    book = fold_intent_events(book, "i", [ev.IntentApproved(operator_id="op"), _dispatched()],
                              at_ms=T0_MS + 1)  # fmt: skip
    assert _used(book, T0_MS + 1) == 10_100


def test_fold_releases_on_every_ending_that_moved_no_money() -> None:
    endings: list[ev.EventData] = [
        ev.IntentRejected(by="policy", reason="x"),
        ev.IntentFailed(reason="no_route", attempts=1),
        ev.IntentCancelled(by="a"),
        ev.IntentExpired(deadline_at_ms=None),
    ]
    for ending in endings:
        book = fold_intent_events(SpendBook(), "i", [
            _received("i"), ev.IntentPolicyChecked(tier="review", policy_version=1), ending,
        ], at_ms=T0_MS)  # fmt: skip
        assert _used(book) == 0, type(ending).__name__
        assert book.intents == {}


def test_a_success_without_proof_keeps_its_reservation() -> None:
    book = fold_intent_events(SpendBook(), "i", [
        _received("i"), ev.IntentPolicyChecked(tier="auto", policy_version=1), _dispatched(),
        ev.PaymentSucceeded(attempt=1, payment_hash=None, preimage="00", fee_msat=1),
    ], at_ms=T0_MS)  # fmt: skip
    assert _used(book, T0_MS + 100 * HOUR_MS) == 10_100
