"""Ways out of the states a node's silence used to leave open forever (issue 13, finding 8).

An intent on the wire that outlived its bound is escalated (an exception item with the
evidence so far), keeps its spend reserved, and ends only with the node's proof or an
operator's recorded decision; a success without a valid preimage is settled by a later proof
or resolved by an operator; an invoice dated far in the future, or with an absurd expiry, is
refused with a code naming the field.
"""

from __future__ import annotations

import hashlib

import pytest

from schemas import commands as cmd
from schemas import errors, limits
from schemas import events as ev
from schemas.common import Caller
from services.domain.intent import DecisionContext, IntentStatus, PaymentIntent, decide, evolve
from services.domain.policy.spend import WindowLimit
from services.domain.policy.spend_tracker import SpendTracker
from services.domain.routing import CorridorTable, OrderedRouter, RouteCandidate
from tests.unit.test_intent_machine import FixedPolicy

NOW_MS = 1_700_000_000_000
PREIMAGE = hashlib.sha256(b"p").hexdigest()
PAYMENT_HASH = hashlib.sha256(bytes.fromhex(PREIMAGE)).hexdigest()
WRONG_PREIMAGE = hashlib.sha256(b"wrong").hexdigest()
ROUTER = OrderedRouter(
    CorridorTable(corridors={"us-eu": (RouteCandidate(region="us", node="us-lnd"),)})
)


def _invoice(*, created_at_s: int = NOW_MS // 1000, expiry_s: int = 3600) -> ev.InvoiceFacts:
    return ev.InvoiceFacts(
        payment_hash=PAYMENT_HASH, payee="02" + "ab" * 32, network="regtest",
        amount_msat=10_000, created_at_s=created_at_s, expires_at_s=created_at_s + expiry_s,
    )  # fmt: skip


def _ctx(now_ms: int = NOW_MS, invoice: ev.InvoiceFacts | None = None) -> DecisionContext:
    return DecisionContext(
        now_ms=now_ms, policy=FixedPolicy("auto", False), router=ROUTER, intent_id="intent-1",
        request_fingerprint="fp", invoice=invoice or _invoice(),
    )  # fmt: skip


def _submit() -> cmd.SubmitPaymentIntent:
    return cmd.SubmitPaymentIntent(
        idempotency_key="k", caller=Caller(id="alice", kind="agent"), corridor="us-eu",
        amount_msat=10_000, max_fee_msat=100, payment_request="lnbcrt100n1test",
    )  # fmt: skip


def _run(
    state: PaymentIntent | None, command: cmd.Command, ctx: DecisionContext | None = None
) -> tuple[PaymentIntent, list[ev.EventData]]:
    events = decide(state, command, ctx or _ctx())
    for event in events:
        state = evolve(state, event)
    assert state is not None
    return state, events


def _dispatched() -> tuple[PaymentIntent, SpendTracker]:
    state, events = _run(None, _submit())
    assert state.status is IntentStatus.DISPATCHED
    spend = SpendTracker()
    spend.apply("intent-1", events, at_ms=NOW_MS)
    return state, spend


def _outcome(state: PaymentIntent, preimage: str) -> cmd.RecordPaymentOutcome:
    return cmd.RecordPaymentOutcome(
        intent_id="intent-1", attempt=state.attempt, outcome="succeeded", region="us",
        node="us-lnd", preimage=preimage, payment_hash=PAYMENT_HASH,
    )  # fmt: skip


def _resolve(resolution: str, *, operator: str = "op", preimage: str | None = None) -> cmd.Command:
    return cmd.ResolvePaymentIntent(
        intent_id="intent-1", operator_id=operator, resolution=resolution,  # type: ignore[arg-type]
        evidence="lncli listpayments shows no HTLC for the hash", preimage=preimage,
    )  # fmt: skip


def _open_msat(spend: SpendTracker) -> int:
    """Alice's reserved and settled spend (nothing settles in these tests)."""
    [use] = spend.window_uses("alice", (WindowLimit(window_ms=1, limit_msat=1),), now_ms=NOW_MS)
    return use.used_msat


def test_a_node_that_never_answers_is_escalated_with_its_evidence_and_keeps_its_spend() -> None:
    state, spend = _dispatched()
    reserved_msat = _open_msat(spend)
    assert reserved_msat > 0
    later = _ctx(NOW_MS + 3_600_000)
    escalate = cmd.EscalatePaymentIntent(intent_id="intent-1", on_wire_since_ms=NOW_MS, life_s=60)
    after, events = _run(state, escalate, later)
    [escalated] = events
    assert isinstance(escalated, ev.IntentEscalated)
    assert (escalated.reason, escalated.attempt, escalated.state) == (
        "life_exceeded",
        1,
        "dispatched",
    )
    assert (escalated.region, escalated.node, escalated.payment_hash) == (
        "us",
        "us-lnd",
        PAYMENT_HASH,
    )
    assert after.status is IntentStatus.DISPATCHED, "an exception item changes no status"
    spend.apply("intent-1", events, at_ms=NOW_MS + 3_600_000)
    assert _open_msat(spend) == reserved_msat, "a timeout is no proof: spend stays reserved"
    # Once per attempt.
    assert decide(after, escalate, later) == []


def test_escalation_before_the_bound_is_refused() -> None:
    state, _ = _dispatched()
    early = cmd.EscalatePaymentIntent(intent_id="intent-1", on_wire_since_ms=NOW_MS, life_s=60)
    with pytest.raises(errors.InvalidTransition):
        decide(state, early, _ctx(NOW_MS + 59_999))


def test_an_operator_decision_releases_the_spend_and_is_recorded() -> None:
    state, spend = _dispatched()
    after, events = _run(state, _resolve("not_paid"))
    assert [type(e).__name__ for e in events] == ["IntentResolved", "IntentFailed"]
    resolved = events[0]
    assert isinstance(resolved, ev.IntentResolved) and resolved.operator_id == "op"
    assert "listpayments" in resolved.evidence
    assert after.status is IntentStatus.FAILED and after.failure_reason == "resolved_not_paid"
    spend.apply("intent-1", events, at_ms=NOW_MS)
    assert _open_msat(spend) == 0


def test_the_caller_cannot_resolve_its_own_intent() -> None:
    state, _ = _dispatched()
    with pytest.raises(errors.TwoPersonRule) as refused:
        decide(state, _resolve("not_paid", operator="alice"), _ctx())
    assert refused.value.field == "operator_id"


def test_only_an_intent_awaiting_evidence_can_be_resolved() -> None:
    settled, _ = _run(_dispatched()[0], _outcome(_dispatched()[0], PREIMAGE))
    assert settled.status is IntentStatus.SETTLED
    with pytest.raises(errors.InvalidTransition):
        decide(settled, _resolve("not_paid"), _ctx())


def test_a_success_without_proof_is_left_by_the_nodes_preimage() -> None:
    state, _ = _dispatched()
    unproven, events = _run(state, _outcome(state, WRONG_PREIMAGE))
    assert unproven.status is IntentStatus.SUCCEEDED  # a dead end before issue 13
    settled, events = _run(unproven, _outcome(unproven, PREIMAGE))
    assert [type(e).__name__ for e in events] == ["IntentSettled"]
    assert settled.status is IntentStatus.SETTLED and settled.preimage == PREIMAGE
    # Another wrong preimage stays an anomaly, not a way out.
    _, events = _run(unproven, _outcome(unproven, hashlib.sha256(b"x").hexdigest()))
    assert [type(e).__name__ for e in events] == ["OutcomeIgnored"]


def test_a_success_without_proof_is_escalated_and_resolved_by_an_operator() -> None:
    state, _ = _dispatched()
    unproven, _ = _run(state, _outcome(state, WRONG_PREIMAGE))
    escalate = cmd.EscalatePaymentIntent(intent_id="intent-1", on_wire_since_ms=NOW_MS, life_s=1)
    _, [escalated] = _run(unproven, escalate, _ctx(NOW_MS + 1000))
    assert isinstance(escalated, ev.IntentEscalated) and escalated.reason == "unproven_success"
    with pytest.raises(errors.InvalidTransition) as refused:
        decide(unproven, _resolve("settled", preimage=WRONG_PREIMAGE), _ctx())
    assert (refused.value.code, refused.value.field) == ("preimage_mismatch", "preimage")
    with pytest.raises(errors.MissingField):
        decide(unproven, _resolve("settled"), _ctx())
    settled, events = _run(unproven, _resolve("settled", preimage=PREIMAGE))
    assert [type(e).__name__ for e in events] == ["IntentResolved", "IntentSettled"]
    assert settled.status is IntentStatus.SETTLED
    failed, _ = _run(unproven, _resolve("not_paid"))
    assert failed.status is IntentStatus.FAILED


def test_an_operator_settles_an_intent_on_the_wire_with_the_preimage() -> None:
    state, _ = _dispatched()
    settled, events = _run(state, _resolve("settled", preimage=PREIMAGE))
    assert [type(e).__name__ for e in events] == [
        "IntentResolved", "PaymentSucceeded", "IntentSettled",
    ]  # fmt: skip
    assert settled.status is IntentStatus.SETTLED


@pytest.mark.parametrize(
    ("created_at_s", "expiry_s", "code", "field"),
    [
        # The invoice: dated 2**35 - 1 s with expiry 2**30.
        (2**35 - 1, 2**30, "invoice_from_future", "payment_request.timestamp"),
        (NOW_MS // 1000 + limits.INVOICE_CLOCK_SKEW_S_MAX + 1, 3600, "invoice_from_future",
         "payment_request.timestamp"),
        (NOW_MS // 1000, 2**30, "invoice_expiry_too_long", "payment_request.expiry"),
        (NOW_MS // 1000, limits.INVOICE_EXPIRY_S_MAX + 1, "invoice_expiry_too_long",
         "payment_request.expiry"),
    ],
)  # fmt: skip
def test_implausible_invoice_dates_are_refused_with_the_field(
    created_at_s: int, expiry_s: int, code: str, field: str
) -> None:
    invoice = _invoice(created_at_s=created_at_s, expiry_s=expiry_s)
    with pytest.raises(errors.InvalidInvoice) as refused:
        decide(None, _submit(), _ctx(invoice=invoice))
    assert (refused.value.code, refused.value.field) == (code, field)


def test_invoices_within_the_bounds_are_accepted() -> None:
    skewed = _invoice(created_at_s=NOW_MS // 1000 + limits.INVOICE_CLOCK_SKEW_S_MAX,
                      expiry_s=limits.INVOICE_EXPIRY_S_MAX)  # fmt: skip
    state, _ = _run(None, _submit(), _ctx(invoice=skewed))
    assert state.status is IntentStatus.DISPATCHED
