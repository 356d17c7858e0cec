"""The bookkeeping that lets several engines share one spend truth (ADR 0073): which log
positions an engine has folded, per caller, and a tracker that never crashes on an outcome
whose reservation another engine made."""

from __future__ import annotations

from schemas import events as ev
from schemas.common import Caller
from services.domain.policy import WindowLimit
from services.domain.policy.spend_tracker import SpendTracker
from services.engine.spend_sync import OWN_RANGES_MAX, SpendSync

HOUR = WindowLimit(3_600_000, 10**9)


def _received(intent_id: str, caller: str = "bot", amount_msat: int = 1_000) -> ev.IntentReceived:
    return ev.IntentReceived(
        intent_id=intent_id, caller=Caller(id=caller, kind="agent"), idempotency_key=intent_id,
        corridor="us-eu", amount_msat=amount_msat, max_fee_msat=10,
        destination="02" + "11" * 32, received_at_ms=0, request_fingerprint="f",
    )  # fmt: skip


def _settled(total_msat: int) -> ev.IntentSettled:
    return ev.IntentSettled(
        amount_msat=total_msat, fee_msat=0, total_msat=total_msat, preimage="0", fee_ppm=0
    )


def test_own_contiguous_appends_move_what_the_engine_has_folded() -> None:
    sync = SpendSync(seen_through=10)
    sync.appended(11, 4, ["bot"])
    assert sync.seen_through == 14
    assert sync.known("bot") == 14 and sync.known("other") == 14


def test_a_gap_left_by_another_writer_holds_the_position_back_per_caller() -> None:
    sync = SpendSync(seen_through=10)
    sync.appended(21, 5, ["bot"])  # positions 11-20: another engine, not folded here
    assert sync.seen_through == 10
    assert sync.known("bot") == 25  # this engine's own batch was the last to touch bot
    assert sync.known("other") == 10  # anything another engine did to `other` is unseen
    assert sync.fence(["other", "bot", "bot"]) == (("bot", "other"), (25, 10))
    sync.appended(11, 10)  # the gap was this process's own too (the checkpointer's)
    assert sync.seen_through == 25


def test_own_appends_that_arrive_out_of_order_still_close_the_gap() -> None:
    sync = SpendSync(seen_through=0)
    sync.appended(4, 2)
    sync.appended(1, 3)
    assert sync.seen_through == 5


def test_too_many_own_ranges_behind_a_gap_ask_for_a_catch_up() -> None:
    sync = SpendSync(seen_through=0)
    for index in range(OWN_RANGES_MAX + 1):
        sync.appended(2 + 2 * index, 1)
    assert sync.stale


def test_a_settlement_whose_reservation_was_never_folded_changes_nothing() -> None:
    tracker = SpendTracker()
    tracker.begin()
    tracker.apply("elsewhere", [_settled(500)], at_ms=5)
    tracker.apply("elsewhere", [ev.IntentCancelled(by="t", reason="r")], at_ms=5)
    tracker.commit()
    assert tracker.window_uses("bot", [HOUR], now_ms=10)[0].used_msat == 0


def test_a_settlement_folded_late_counts_once_and_releases_its_reservation() -> None:
    tracker = SpendTracker()
    tracker.apply("a", [_received("a"), ev.IntentPolicyChecked(tier="auto", policy_version=1)],
                  at_ms=100)  # fmt: skip
    tracker.apply("b", [_received("b"), ev.IntentPolicyChecked(tier="auto", policy_version=1)],
                  at_ms=200)  # fmt: skip
    tracker.apply("b", [_settled(1_005)], at_ms=300)
    # Another engine's earlier settlement of "a", folded after this engine's own.
    tracker.apply("a", [_settled(1_002)], at_ms=250)
    assert tracker.window_uses("bot", [HOUR], now_ms=400)[0].used_msat == 2_007
    assert not tracker.knows("a") and not tracker.knows("b")


def test_a_settlement_of_an_intent_that_reserved_nothing_does_not_crash() -> None:
    tracker = SpendTracker()
    tracker.apply("a", [_received("a"), ev.IntentPolicyChecked(tier="approval", policy_version=1)],
                  at_ms=100)  # fmt: skip
    tracker.apply("a", [_settled(1_002)], at_ms=250)
    assert tracker.window_uses("bot", [HOUR], now_ms=400)[0].used_msat == 0
