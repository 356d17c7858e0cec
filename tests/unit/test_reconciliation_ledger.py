"""The per-node reconciliation ledger: one item per key, resolution only of open items, and a
breaker that trips once, on an unexpected payment, where the region enables it."""

from __future__ import annotations

import pytest

from schemas import errors
from schemas.reconciliation_messages import (
    ClearNodeBreaker,
    MismatchFinding,
    ReportReconciliation,
    ResolveReconciliationMismatch,
)
from services.domain.reconciliation.ledger import NodeLedger, decide, evolve

NODE = "us-lnd"
H1, H2 = "11" * 32, "22" * 32


def finding(category: str, payment_hash: str) -> MismatchFinding:
    return MismatchFinding(key=f"{category}:{payment_hash}", category=category,  # type: ignore[arg-type]
                           payment_hash=payment_hash)  # fmt: skip


def report(
    *found: MismatchFinding, consistent: tuple[str, ...] = (), trip: bool = True
) -> ReportReconciliation:
    return ReportReconciliation(node=NODE, region="us", found=found, consistent=consistent,
                                trip_breaker=trip)  # fmt: skip


def apply(state: NodeLedger, command: object, now_ms: int = 1) -> NodeLedger:
    for event in decide(state, command, now_ms=now_ms):  # type: ignore[arg-type]
        state = evolve(state, event)
    return state


def test_the_same_finding_twice_is_one_item() -> None:
    stuck = finding("stuck_in_flight", H1)
    state = apply(NodeLedger(node=NODE), report(stuck, stuck))
    assert list(state.open) == [stuck.key]
    assert decide(state, report(stuck), now_ms=2) == []


def test_a_consistent_pass_resolves_all_but_unexpected_payments() -> None:
    stuck, stray = finding("stuck_in_flight", H1), finding("unexpected_payment", H2)
    state = apply(NodeLedger(node=NODE), report(stuck, stray, trip=False))
    assert not state.tripped
    events = decide(state, report(consistent=(stuck.key, stray.key, "unknown:key")), now_ms=9)
    assert [type(e).__name__ for e in events] == ["ReconciliationMismatchResolved"]
    assert events[0].found_at_ms == 1 and events[0].resolved_at_ms == 9  # type: ignore[attr-defined]


def test_breaker_trips_once_and_clears_with_the_operators_reason() -> None:
    state = apply(NodeLedger(node=NODE), report(finding("unexpected_payment", H1),
                                                finding("unexpected_payment", H2)))  # fmt: skip
    assert state.tripped and state.region == "us"
    clear = ClearNodeBreaker(node=NODE, operator_id="op-1", reason="refund")
    events = decide(state, clear, now_ms=5)
    assert [type(e).__name__ for e in events] == [
        "ReconciliationMismatchResolved",
        "ReconciliationMismatchResolved",
        "NodeBreakerCleared",
    ]
    state = apply(state, clear)
    assert not state.tripped and not state.open
    assert decide(state, clear, now_ms=6) == []  # clearing twice: nothing


def test_an_operator_resolves_only_open_items() -> None:
    stuck = finding("stuck_in_flight", H1)
    state = apply(NodeLedger(node=NODE), report(stuck))
    resolve = ResolveReconciliationMismatch(node=NODE, key=stuck.key, operator_id="op-1",
                                            reason="checked on the node")  # fmt: skip
    state = apply(state, resolve)
    assert not state.open
    with pytest.raises(errors.NotFound):
        decide(state, resolve, now_ms=3)
