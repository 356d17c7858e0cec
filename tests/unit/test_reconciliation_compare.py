"""The comparison of our log with a node's record: one table row per category, and the rows
that must find nothing."""

from __future__ import annotations

import pytest

from services.domain.reconciliation.attempts import fold_attempts
from services.domain.reconciliation.compare import (
    Category,
    NodeRecord,
    OurAttempt,
    compare,
    merge,
)

H = "ab" * 32
BOUND_MS = 60_000
NOW_MS = 1_000_000


def ours(
    status: str, *, amount: int = 10_000, fee: int | None = 5, at_ms: int = NOW_MS
) -> OurAttempt:
    return OurAttempt(
        intent_id="pi_1", attempt=1, payment_hash=H, amount_msat=amount, status=status,  # type: ignore[arg-type]
        dispatched_at_ms=at_ms, fee_msat=fee if status == "succeeded" else None,
    )  # fmt: skip


def node(status: str, *, amount: int = 10_000, fee: int = 5) -> NodeRecord:
    return NodeRecord(payment_hash=H, status=status, amount_msat=amount, fee_msat=fee)  # type: ignore[arg-type]


CASES = [
    # (name, our attempt or None, node record: absent key / None / record, expected categories)
    ("failed_but_paid", ours("failed"), node("succeeded"), [Category.FAILED_BUT_NODE_PAID]),
    ("paid_no_record", ours("succeeded"), None, [Category.PAID_BUT_NODE_NOT]),
    ("paid_node_failed", ours("succeeded"), node("failed", fee=0), [Category.PAID_BUT_NODE_NOT]),
    ("stuck", ours("in_flight", at_ms=NOW_MS - BOUND_MS - 1), node("in_flight"),
     [Category.STUCK_IN_FLIGHT]),
    ("stuck_unexamined", ours("in_flight", at_ms=NOW_MS - BOUND_MS - 1), "absent",
     [Category.STUCK_IN_FLIGHT]),
    ("amount", ours("succeeded"), node("succeeded", amount=10_001), [Category.AMOUNT_MISMATCH]),
    ("fee", ours("succeeded"), node("succeeded", fee=6), [Category.AMOUNT_MISMATCH]),
    ("unexpected", None, node("succeeded"), [Category.UNEXPECTED_PAYMENT]),
    ("unexpected_in_flight", None, node("in_flight"), [Category.UNEXPECTED_PAYMENT]),
    # Agreement, or nothing to judge yet:
    ("both_paid", ours("succeeded"), node("succeeded"), []),
    ("both_failed", ours("failed"), node("failed", fee=0), []),
    ("failed_no_record", ours("failed"), None, []),
    ("in_flight_within_bound", ours("in_flight", at_ms=NOW_MS - BOUND_MS), node("succeeded"), []),
    ("unknown_failed_moved_nothing", None, node("failed", fee=0), []),
    ("paid_unexamined", ours("succeeded"), "absent", []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "attempt", "record", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_each_category(
    name: str, attempt: OurAttempt | None, record: object, expected: list[Category]
) -> None:
    records = {} if record == "absent" else {H: record}
    found = compare(
        [attempt] if attempt else [],
        records,
        now_ms=NOW_MS,
        in_flight_bound_ms=BOUND_MS,  # type: ignore[arg-type]
    )
    assert [m.category for m in found] == expected
    for mismatch in found:
        assert mismatch.payment_hash == H and mismatch.key == f"{mismatch.category}:{H}"
        assert mismatch.evidence["node_status"] is not None
        if attempt is not None:
            assert (mismatch.intent_id, mismatch.attempt) == ("pi_1", 1)


def test_old_unknown_records_are_not_judged_unexpected() -> None:
    old = NodeRecord(payment_hash=H, status="succeeded", amount_msat=1, fee_msat=0, created_at_s=9)
    assert (
        compare([], {H: old}, now_ms=NOW_MS, in_flight_bound_ms=BOUND_MS, unexpected_since_s=10)
        == []
    )


def test_merge_prefers_paid_then_in_flight() -> None:
    entries = [node("failed", fee=0), node("succeeded"), node("in_flight")]
    assert merge(entries)[H].status == "succeeded"
    assert merge([node("failed", fee=0), node("in_flight")])[H].status == "in_flight"


def test_a_success_among_our_attempts_speaks_for_the_hash() -> None:
    first = ours("failed")
    second = OurAttempt(intent_id="pi_1", attempt=2, payment_hash=H, amount_msat=10_000,
                        status="succeeded", dispatched_at_ms=NOW_MS, fee_msat=5)  # fmt: skip
    assert compare([second, first], {H: node("succeeded")}, now_ms=NOW_MS,
                   in_flight_bound_ms=BOUND_MS) == []  # fmt: skip


def test_fold_follows_an_attempt_on_its_node_only() -> None:
    def record(kind: str, position: int, **data: object) -> dict[str, object]:
        return {"type": kind, "stream_id": "pi_1", "data": data, "recorded_at_ms": 7,
                "position": position}  # fmt: skip

    records = [
        record("IntentDispatched", 1, attempt=1, node="n1", payment_hash=H, amount_msat=10),
        record("PaymentAttemptFailed", 2, attempt=1, reason="no_route", confirmed_not_paid=True),
        record("IntentDispatched", 3, attempt=2, node="n2", payment_hash=H, amount_msat=10),
        record("PaymentSucceeded", 4, attempt=2, payment_hash=H, preimage="00", fee_msat=3),
    ]
    (on_n1,) = fold_attempts(records, node="n1")
    assert (on_n1.attempt.status, on_n1.last_position) == ("failed", 2)
    (on_n2,) = fold_attempts(records, node="n2")
    assert (on_n2.attempt.status, on_n2.attempt.fee_msat, on_n2.last_position) == (
        "succeeded",
        3,
        4,
    )
