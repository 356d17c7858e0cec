"""The receive aggregate (ADR 0220): the transition table, and property tests over random
sequences of executor reports (redeliveries, a resumed follower, stale and forged reports).

Invariants: an invoice is credited at most once (one ``InvoicePaid`` per intent, whatever is
reported how often); a paid receive stays paid; an expired receive still takes the node's
late settlement (a payment is never lost to the expiry); folding the recorded events gives
the state exactly; the same key and request is the same intent, a different request is refused.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from schemas import errors
from schemas.common import Caller
from schemas.events import EventData
from schemas.receive_messages import (
    CreateReceiveIntent,
    InvoiceExpired,
    InvoicePaid,
    ReceiveDispatched,
    ReceiveFailed,
    ReceiveRequested,
    RecordInvoiceState,
)
from services.domain.receive import (
    TRANSITIONS,
    ReceiveContext,
    ReceiveIntent,
    ReceiveStatus,
    ReceiveTransitionError,
    decide,
    evolve,
    fold,
)
from services.domain.routing import CorridorTable, NodeHealth, OrderedRouter, RouteCandidate

PREIMAGE = hashlib.sha256(b"p").hexdigest()
PAYMENT_HASH = hashlib.sha256(bytes.fromhex(PREIMAGE)).hexdigest()
OTHER_PREIMAGE = hashlib.sha256(b"other").hexdigest()
OTHER_HASH = hashlib.sha256(bytes.fromhex(OTHER_PREIMAGE)).hexdigest()
US_LND = RouteCandidate(region="us", node="us-lnd")
TABLE = CorridorTable(
    corridors={
        "us-eu": (US_LND, RouteCandidate(region="eu", node="eu-lnd")),
        "eu-us": (RouteCandidate(region="eu", node="eu-cln"), US_LND),
    }
)
ROUTER = OrderedRouter(TABLE)
ALICE = Caller(id="alice", kind="service")
CREATE = CreateReceiveIntent(idempotency_key="k", caller=ALICE, amount_msat=50_000, region="us")
CTX = ReceiveContext(now_ms=1_700_000_000_000, router=ROUTER, intent_id="rcv-1",
                     request_fingerprint="fp")  # fmt: skip


def _run(state: ReceiveIntent | None, events: list[EventData]) -> ReceiveIntent | None:
    for event in events:
        state = evolve(state, event)
    return state


def _report(state: str, **fields: object) -> RecordInvoiceState:
    base: dict[str, object] = {
        "intent_id": "rcv-1", "node": "us-lnd", "region": "us", "state": state,
        "payment_hash": PAYMENT_HASH, "payment_request": "lnbcrt500n1receive",
        "expires_at_s": 1_700_003_600,
    }  # fmt: skip
    if state == "paid":
        base |= {"preimage": PREIMAGE, "amount_received_msat": 50_000, "pay_index": 3}
    return RecordInvoiceState(**(base | fields))  # type: ignore[arg-type]


def test_create_picks_a_node_of_the_region_and_dispatches_it() -> None:
    events = decide(None, CREATE, CTX)
    assert [type(e) for e in events] == [ReceiveRequested, ReceiveDispatched]
    order = events[1]
    assert isinstance(order, ReceiveDispatched)
    assert (order.region, order.node, order.amount_msat) == ("us", "us-lnd", 50_000)


def test_an_unhealthy_region_fails_the_receive_with_the_refused_nodes() -> None:
    sick = OrderedRouter(TABLE, {("us", "us-lnd"): NodeHealth(healthy=False)})
    ctx = ReceiveContext(now_ms=1, router=sick, intent_id="rcv-1", request_fingerprint="fp")
    events = decide(None, CREATE, ctx)
    assert isinstance(events[1], ReceiveFailed) and events[1].reason == "no_node"
    assert "us/us-lnd: unhealthy" in events[1].detail
    unknown = decide(None, CreateReceiveIntent(idempotency_key="k", caller=ALICE,
                                               amount_msat=1, region="asia"), ctx)  # fmt: skip
    assert isinstance(unknown[1], ReceiveFailed)


def test_a_corridor_receives_on_its_first_usable_candidate() -> None:
    command = CreateReceiveIntent(
        idempotency_key="k", caller=ALICE, amount_msat=1, corridor="eu-us"
    )
    order = decide(None, command, CTX)[1]
    assert isinstance(order, ReceiveDispatched) and order.node == "eu-cln"


def test_region_and_corridor_are_exclusive() -> None:
    for command in (
        CreateReceiveIntent(idempotency_key="k", caller=ALICE, amount_msat=1),
        CreateReceiveIntent(
            idempotency_key="k", caller=ALICE, amount_msat=1, region="us", corridor="us-eu"
        ),
    ):
        with pytest.raises(errors.SchemaViolation) as refused:
            decide(None, command, CTX)
        assert refused.value.field == "region"


def test_same_key_same_request_is_the_same_intent_and_a_different_request_is_refused() -> None:
    state = _run(None, decide(None, CREATE, CTX))
    assert decide(state, CREATE, CTX) == []
    other = ReceiveContext(now_ms=1, router=ROUTER, intent_id="rcv-1", request_fingerprint="fp2")
    with pytest.raises(errors.IdempotencyMismatch) as refused:
        decide(state, CREATE, other)
    assert refused.value.field == "idempotency_key"


def test_reports_from_another_node_or_with_a_bad_preimage_are_refused() -> None:
    state = _run(None, decide(None, CREATE, CTX))
    with pytest.raises(errors.CorridorError) as wrong:
        decide(state, _report("issued", node="eu-lnd"), CTX)
    assert wrong.value.code == "wrong_node"
    state = _run(state, decide(state, _report("issued"), CTX))
    with pytest.raises(errors.CorridorError) as forged:
        decide(state, _report("paid", preimage=OTHER_PREIMAGE), CTX)
    assert forged.value.code == "invalid_preimage"
    with pytest.raises(errors.CorridorError) as other_invoice:
        decide(state, _report("paid", payment_hash=OTHER_HASH, preimage=OTHER_PREIMAGE), CTX)
    assert other_invoice.value.code == "invoice_mismatch"
    with pytest.raises(errors.CorridorError) as short:
        decide(state, _report("paid", amount_received_msat=49_999), CTX)
    assert short.value.code == "underpaid"


def test_every_transition_outside_the_table_is_refused() -> None:
    samples: dict[str, EventData] = {
        "ReceiveRequested": decide(None, CREATE, CTX)[0],
        "ReceiveDispatched": decide(None, CREATE, CTX)[1],
        "ReceiveFailed": ReceiveFailed(reason="no_node"),
        **{
            type(e).__name__: e
            for e in [
                *decide(_run(None, decide(None, CREATE, CTX)), _report("paid"), CTX),
            ]
        },
    }
    samples["InvoiceExpired"] = InvoiceExpired(node="us-lnd", payment_hash=PAYMENT_HASH)
    base = _run(None, [samples["ReceiveRequested"]])
    assert base is not None
    for status in [None, *ReceiveStatus]:
        state = None if status is None else ReceiveIntent(
            **{**{f: getattr(base, f) for f in base.__struct_fields__}, "status": status}
        )  # fmt: skip
        for name, event in samples.items():
            allowed = (status, name) in TRANSITIONS
            if allowed:
                assert evolve(state, event).status is TRANSITIONS[(status, name)]
            else:
                with pytest.raises(ReceiveTransitionError):
                    evolve(state, event)


REPORTS = st.sampled_from(
    ["issued", "paid", "expired", "failed", "paid_other_node", "issued_other"]
)


class ReceiveMachine(RuleBasedStateMachine):
    @initialize(healthy=st.booleans())
    def create(self, healthy: bool) -> None:
        router = ROUTER if healthy else OrderedRouter(
            TABLE, {("us", "us-lnd"): NodeHealth(healthy=False)}
        )  # fmt: skip
        self.ctx = ReceiveContext(now_ms=1, router=router, intent_id="rcv-1",
                                  request_fingerprint="fp")  # fmt: skip
        self.events: list[EventData] = []
        self.state: ReceiveIntent | None = None
        self.was_paid = False
        self._apply(CREATE)

    def _apply(self, command: CreateReceiveIntent | RecordInvoiceState) -> None:
        try:
            new = decide(self.state, command, self.ctx)
        except errors.CorridorError:
            return
        for event in new:
            self.state = evolve(self.state, event)
            self.events.append(event)

    @rule(kind=REPORTS)
    def executor_reports(self, kind: str) -> None:
        match kind:
            case "paid_other_node":
                self._apply(_report("paid", node="eu-lnd", region="eu"))
            case "issued_other":
                self._apply(_report("issued", payment_hash=OTHER_HASH))
            case _:
                self._apply(_report(kind))

    @rule()
    def caller_retries(self) -> None:
        before = list(self.events)
        self._apply(CREATE)
        assert self.events == before

    @invariant()
    def credited_at_most_once(self) -> None:
        paid = [e for e in self.events if isinstance(e, InvoicePaid)]
        assert len(paid) <= 1
        if paid:
            self.was_paid = True
            assert self.state is not None and self.state.status is ReceiveStatus.PAID
            assert self.state.amount_received_msat == 50_000
        if self.was_paid:
            assert self.state is not None and self.state.status is ReceiveStatus.PAID

    @invariant()
    def fold_reproduces_the_state(self) -> None:
        assert fold(self.events) == self.state


TestReceiveMachine = ReceiveMachine.TestCase


def test_a_late_settlement_after_the_expiry_is_credited_once() -> None:
    state = _run(None, decide(None, CREATE, CTX))
    for report in (_report("issued"), _report("expired")):
        state = _run(state, decide(state, report, CTX))
    assert state is not None and state.status is ReceiveStatus.EXPIRED
    late = decide(state, _report("paid"), CTX)
    assert len(late) == 1 and isinstance(late[0], InvoicePaid) and late[0].late
    state = _run(state, late)
    assert state is not None and state.status is ReceiveStatus.PAID
    assert decide(state, _report("paid"), CTX) == []
    assert decide(state, _report("expired"), CTX) == []


def test_a_settlement_reported_before_the_issue_records_both() -> None:
    state = _run(None, decide(None, CREATE, CTX))
    events = decide(state, _report("paid"), CTX)
    assert [type(e).__name__ for e in events] == ["InvoiceIssued", "InvoicePaid"]
