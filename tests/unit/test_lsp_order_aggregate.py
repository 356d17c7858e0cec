"""The LSP order aggregate: states, the quote checks before paying, one payment per order,
timeouts, terminal states that absorb late reports, and the reconciliation exceptions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import lsp_messages as lm
from schemas.common import Caller
from schemas.events import EventData
from services.domain.lsp_orders import (
    LspOrder,
    LspOrderContext,
    LspOrderPolicy,
    LspOrderStatus,
    Refusal,
    decide,
    evolve,
    exceptions,
    replay,
)
from services.domain.lsp_orders.evolve import TransitionRefused

LSP = "02" + "ab" * 32
ORDER_ID = "lsp-0b7e0c1a-0000-4000-8000-000000000001"
NOW_MS = 1_760_000_000_000
POLICY = LspOrderPolicy(lsp_balance_msat_max=16_777_215_000, answer_window_ms=60_000)


def ctx(now_ms: int = NOW_MS, fingerprint: str = "fp") -> LspOrderContext:
    return LspOrderContext(
        lsp_order_id=ORDER_ID, request_fingerprint=fingerprint,
        caller=Caller(id="operator-1", kind="human"), policy=POLICY, now_ms=now_ms,
    )  # fmt: skip


def order(**changes: Any) -> lm.OrderLspChannel:
    fields: dict[str, Any] = {
        "idempotency_key": "k1", "region": "us", "node": "us-lnd", "lsp_pubkey": LSP,
        "lsp_balance_msat": 5_000_000_000, "max_fee_msat": 20_000_000,
    }  # fmt: skip
    fields.update(changes)
    return lm.OrderLspChannel(**fields)


def created(**changes: Any) -> lm.RecordLspOrderReport:
    fields: dict[str, Any] = {
        "lsp_order_id": ORDER_ID, "stage": "created", "remote_order_id": "bb4b5d0a",
        "invoice": "lnbcrt1invoice", "invoice_amount_msat": 11_000_000, "invoice_payee": LSP,
        "fee_total_msat": 11_000_000, "order_total_msat": 11_000_000,
        "expires_at_s": NOW_MS // 1000 + 3600,
    }  # fmt: skip
    fields.update(changes)
    return lm.RecordLspOrderReport(**fields)


def report(stage: str, **fields: Any) -> lm.RecordLspOrderReport:
    return lm.RecordLspOrderReport(lsp_order_id=ORDER_ID, stage=stage, **fields)  # type: ignore[arg-type]


def run(state: LspOrder | None, command: Any, context: LspOrderContext | None = None) -> Any:
    decision = decide(state, command, context or ctx())
    if isinstance(decision, Refusal):
        return decision, state
    for event in decision:
        state = evolve(state, event)
    return decision, state


def paying() -> LspOrder:
    _, state = run(None, order())
    _, state = run(state, created())
    assert state is not None and state.status is LspOrderStatus.PAYING
    return state


def test_an_order_is_requested_then_paid_once_with_its_key_then_completed() -> None:
    events, state = run(None, order())
    assert [type(e).__name__ for e in events] == ["LspOrderRequested"]
    assert events[0].answer_deadline_ms == NOW_MS + 60_000
    events, state = run(state, created())
    assert [type(e).__name__ for e in events] == ["LspOrderCreated", "LspOrderPaymentRequested"]
    pay = events[1]
    assert pay.payment_key == f"lsp-order:{ORDER_ID}" and pay.amount_msat == 11_000_000
    assert pay.max_routing_fee_msat == 50_000
    again, state = run(state, created())
    assert again == []  # a redelivered report: no second payment
    events, state = run(state, report("paid", payment_intent_id="intent-1"))
    assert state.status is LspOrderStatus.PAID
    outpoint = "aa" * 32 + ":0"
    events, state = run(state, report("status", order_state="COMPLETED", funding_outpoint=outpoint))
    assert state.status is LspOrderStatus.COMPLETED and state.funding_outpoint == outpoint
    assert run(state, report("status", order_state="FAILED"))[0] == []  # terminal absorbs


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"fee_total_msat": 20_000_001, "order_total_msat": 20_000_001,
          "invoice_amount_msat": 20_000_001}, "fee_over_budget"),
        ({"order_total_msat": 12_000_000, "invoice_amount_msat": 12_000_000}, "total_mismatch"),
        ({"invoice_amount_msat": 11_000_001}, "invoice_mismatch"),
        ({"invoice_payee": "03" + "cd" * 32}, "invoice_mismatch"),
        ({"expires_at_s": NOW_MS // 1000}, "already_expired"),
    ],
)  # fmt: skip
def test_a_quote_that_breaks_a_check_is_abandoned_unpaid(
    changes: dict[str, Any], reason: str
) -> None:
    _, state = run(None, order())
    events, state = run(state, created(**changes))
    assert [type(e).__name__ for e in events] == ["LspOrderCreated", "LspOrderAbandoned"]
    assert state.status is LspOrderStatus.ABANDONED and state.outcome == reason
    assert state.payment_key is None


def test_refusals_by_the_lsp_and_by_our_rules() -> None:
    _, state = run(None, order())
    _, state = run(state, report("refused", refusal_code=100, refusal_property="x"))
    assert state.status is LspOrderStatus.REFUSED and state.outcome == "100"
    _, state = run(None, order(lsp_balance_msat=5_000_000_001))
    assert state.status is LspOrderStatus.REJECTED and state.outcome == "not_whole_sats"
    _, state = run(None, order(lsp_balance_msat=POLICY.lsp_balance_msat_max + 1000))
    assert state.status is LspOrderStatus.REJECTED and state.outcome == "amount_over_limit"


def test_the_same_key_with_another_request_is_refused() -> None:
    _, state = run(None, order())
    refusal, _ = run(state, order(lsp_balance_msat=6_000_000_000), ctx(fingerprint="other"))
    assert refusal == Refusal("idempotency_key_reused", "idempotency_key")
    assert run(state, order())[0] == []


def test_no_answer_fails_only_after_the_deadline() -> None:
    _, state = run(None, order())
    refusal, _ = run(state, report("no_answer"))
    assert isinstance(refusal, Refusal)
    _, state = run(state, report("no_answer"), ctx(now_ms=NOW_MS + 60_000))
    assert state.status is LspOrderStatus.FAILED and state.outcome == "lsp_no_answer"


def test_an_order_the_lsp_fails_before_we_paid_is_expired_unpaid() -> None:
    _, state = run(paying(), report("status", order_state="FAILED", payment_state="REFUNDED"))
    assert state.status is LspOrderStatus.FAILED and state.outcome == "expired_unpaid"


def test_paid_but_never_completed_is_an_exception_after_the_grace() -> None:
    state = paying()
    _, state = run(state, report("paid", payment_intent_id="intent-1"))
    assert state.expires_at_s is not None
    assert exceptions([state], now_s=state.expires_at_s) == []
    [found] = exceptions([state], now_s=state.expires_at_s + 3601)
    assert found.kind == "paid_not_completed"
    _, requested = run(None, order())
    assert [e.kind for e in exceptions([requested], now_s=NOW_MS // 1000 + 61)] == ["no_answer"]


def test_evolve_refuses_events_outside_the_table() -> None:
    with pytest.raises(TransitionRefused):
        evolve(None, lm.LspOrderPaid(lsp_order_id=ORDER_ID, payment_intent_id="x"))


REPORTS = st.sampled_from(
    [
        created(),
        created(remote_order_id="other"),
        report("refused", refusal_code=100),
        report("no_answer"),
        report("paid", payment_intent_id="intent-1"),
        report("unpaid"),
        report("status", order_state="CREATED"),
        report("status", order_state="COMPLETED", funding_outpoint="aa" * 32 + ":1"),
        report("status", order_state="FAILED", payment_state="REFUNDED"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(REPORTS, st.integers(0, 120_000)), max_size=12))
def test_any_report_sequence_pays_at_most_once_and_replays_to_the_same_state(
    steps: list[tuple[lm.RecordLspOrderReport, int]],
) -> None:
    log: list[EventData] = []
    _, state = run(None, order())
    log += decide(None, order(), ctx())  # type: ignore[operator]
    for command, later_ms in steps:
        before = state
        decision = decide(state, command, ctx(now_ms=NOW_MS + later_ms))
        if isinstance(decision, Refusal):
            continue
        for event in decision:
            state = evolve(state, event)
        log += decision
        if before is not None and before.terminal:
            assert decision == [] and state == before  # terminal states absorb
    assert sum(isinstance(e, lm.LspOrderPaymentRequested) for e in log) <= 1
    assert replay(log) == state
    if state is not None and state.status is LspOrderStatus.COMPLETED:
        assert state.payment_key is not None
