"""The engine's incremental SpendTracker answers exactly like the reference SpendBook."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas import events as ev
from schemas.common import Caller
from services.domain.policy import SpendBook, WindowLimit, fold_intent_events
from services.domain.policy.spend_tracker import SpendTracker

CALLERS = ("a", "b", "c")
DESTINATIONS = ("02" + "11" * 32, "02" + "22" * 32)
LIMITS = (WindowLimit(1_000, 10**9), WindowLimit(5_000, 10**9), WindowLimit(60_000, 10**9))

step = st.tuples(
    st.integers(0, 7),  # which intent
    st.sampled_from(["checked", "approval", "dispatch", "settle", "release"]),
    st.integers(0, 2_000),  # time passes (ms)
)


@given(
    intents=st.lists(
        st.tuples(st.sampled_from(CALLERS), st.integers(1, 10**6), st.sampled_from(DESTINATIONS)),
        min_size=8, max_size=8,
    ),
    steps=st.lists(step, max_size=60),
)  # fmt: skip
def test_tracker_matches_the_reference_ledger(
    intents: list[tuple[str, int, str]], steps: list[tuple[int, str, int]]
) -> None:
    book, tracker = SpendBook(), SpendTracker()
    now_ms = 1_000_000
    stage: dict[int, str] = {}

    def apply(index: int, events: list[ev.EventData]) -> None:
        nonlocal book
        book = fold_intent_events(book, f"i{index}", events, at_ms=now_ms)
        tracker.apply(f"i{index}", events, at_ms=now_ms)

    for index, (caller, amount, destination) in enumerate(intents):
        apply(index, [ev.IntentReceived(
            intent_id=f"i{index}", caller=Caller(id=caller, kind="agent"), idempotency_key="k",
            corridor="us-eu", amount_msat=amount, max_fee_msat=amount // 10,
            destination=destination, received_at_ms=now_ms, request_fingerprint="f",
        )])  # fmt: skip
        stage[index] = "received"
    for index, action, elapsed_ms in steps:
        now_ms += elapsed_ms
        current = stage[index]
        if current in ("settled", "released"):
            continue
        if action == "checked" and current == "received":
            apply(index, [ev.IntentPolicyChecked(tier="auto", policy_version=1)])
            stage[index] = "reserved"
        elif action == "approval" and current == "received":
            apply(index, [ev.IntentPolicyChecked(tier="approval", policy_version=1)])
            stage[index] = "awaiting"
        elif action == "dispatch" and current in ("received", "awaiting", "reserved"):
            apply(index, [ev.IntentDispatched(
                attempt=1, region="us", node="n", amount_msat=1, max_fee_msat=0, pay_timeout_s=1,
            )])  # fmt: skip
            stage[index] = "reserved"
        elif action == "settle" and current == "reserved":
            apply(index, [ev.IntentSettled(amount_msat=1, fee_msat=0, total_msat=intents[index][1],
                                           preimage="0" * 64, fee_ppm=0)])  # fmt: skip
            stage[index] = "settled"
        elif action == "release":
            apply(index, [ev.IntentCancelled(by="x")])
            stage[index] = "released"
        for caller in CALLERS:
            assert tracker.window_uses(caller, LIMITS, now_ms=now_ms) == book.ledger.window_uses(
                caller, LIMITS, now_ms=now_ms
            )
            for window_ms in (500, 3_000, 60_000):
                assert tracker.intents_in_window(
                    caller, window_ms=window_ms, now_ms=now_ms
                ) == book.ledger.intents_in_window(caller, window_ms=window_ms, now_ms=now_ms)
            for destination in DESTINATIONS:
                assert tracker.last_paid_at_ms(caller, destination) == (
                    book.ledger.last_paid_at_ms(caller, destination)
                )


@given(steps=st.lists(step, max_size=40), split=st.integers(0, 40))
def test_rollback_restores_exactly_the_state_before_the_batch(
    steps: list[tuple[int, str, int]], split: int
) -> None:
    """Apply some events, snapshot the answers, apply more inside a batch, roll back."""
    tracker = SpendTracker()
    now_ms = 1_000_000
    for index in range(8):
        tracker.apply(f"i{index}", [ev.IntentReceived(
            intent_id=f"i{index}", caller=Caller(id=CALLERS[index % 3], kind="agent"),
            idempotency_key="k", corridor="us-eu", amount_msat=1000 * (index + 1), max_fee_msat=5,
            destination=DESTINATIONS[index % 2], received_at_ms=now_ms, request_fingerprint="f",
        )], at_ms=now_ms)  # fmt: skip

    def answers() -> list[object]:
        return [
            (tracker.window_uses(c, LIMITS, now_ms=now_ms + 10**6),
             tracker.intents_in_window(c, window_ms=10**7, now_ms=now_ms + 10**6),
             [tracker.last_paid_at_ms(c, d) for d in DESTINATIONS])
            for c in CALLERS
        ]  # fmt: skip

    finished: set[str] = set()

    def play(part: list[tuple[int, str, int]]) -> None:
        nonlocal now_ms
        for index, action, elapsed_ms in part:
            now_ms += elapsed_ms
            intent = f"i{index}"
            if intent in finished:
                continue  # a log never touches a final intent's spend again
            event: ev.EventData
            if action in ("checked", "dispatch"):
                event = ev.IntentPolicyChecked(tier="auto", policy_version=1)
            elif action == "settle" and tracker.is_reserved(intent):
                event = ev.IntentSettled(
                    amount_msat=1, fee_msat=0, total_msat=7, preimage="0", fee_ppm=0
                )
            elif action == "release":
                event = ev.IntentCancelled(by="x")
            else:
                continue
            tracker.apply(intent, [event], at_ms=now_ms)
            if isinstance(event, ev.IntentSettled | ev.IntentCancelled):
                finished.add(intent)

    play(steps[:split])
    before = answers()
    tracker.begin()
    play(steps[split:])
    tracker.rollback()
    assert answers() == before
