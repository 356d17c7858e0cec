"""``decide``: the events a receive command leads to, given the state. Pure.

Idempotent like a payment (ADR 0220): the same caller and key with the same request is the same
intent and records nothing new; with a different request it is ``idempotency_mismatch``. An
executor's report that the log already has (a redelivered order, a follower resuming) records
nothing, so an invoice is credited once however often its settlement is reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from schemas import errors
from schemas.events import EventData
from schemas.receive_messages import (
    CreateReceiveIntent,
    InvoiceExpired,
    InvoiceIssued,
    InvoicePaid,
    ReceiveCommand,
    ReceiveDispatched,
    ReceiveFailed,
    ReceiveRequested,
    RecordInvoiceState,
)
from services.domain.receive.state import ReceiveIntent
from services.domain.receive.status import ReceiveStatus as R
from services.domain.routing import RouteDecision, Router


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceiveContext:
    now_ms: int
    router: Router
    # For CreateReceiveIntent: derived from (caller id, idempotency key) by the service layer.
    intent_id: str | None = None
    request_fingerprint: str | None = None


def decide(
    state: ReceiveIntent | None, command: ReceiveCommand, ctx: ReceiveContext
) -> list[EventData]:
    if isinstance(command, CreateReceiveIntent):
        return _create(state, command, ctx)
    if state is None:
        raise errors.NotFound(f"no receive intent {command.intent_id}", field="intent_id")
    return _report(state, command)


def _create(
    state: ReceiveIntent | None, command: CreateReceiveIntent, ctx: ReceiveContext
) -> list[EventData]:
    assert ctx.intent_id is not None and ctx.request_fingerprint is not None
    if state is not None:
        if state.request_fingerprint != ctx.request_fingerprint:
            raise errors.IdempotencyMismatch(
                "idempotency_key was already used with a different request",
                field="idempotency_key",
            )
        return []
    if (command.region is None) == (command.corridor is None):
        raise errors.SchemaViolation("set exactly one of region or corridor", field="region")
    requested = ReceiveRequested(
        intent_id=ctx.intent_id, caller=command.caller, idempotency_key=command.idempotency_key,
        amount_msat=command.amount_msat, memo=command.memo, expiry_s=command.expiry_s,
        region=command.region, corridor=command.corridor,
        request_fingerprint=ctx.request_fingerprint, received_at_ms=ctx.now_ms,
    )  # fmt: skip
    if command.region is not None:
        choice = ctx.router.choose_in_region(command.region, amount_msat=command.amount_msat)
    else:
        assert command.corridor is not None
        choice = ctx.router.choose(
            command.corridor, amount_msat=command.amount_msat, exclude_nodes=frozenset()
        )
    if not isinstance(choice, RouteDecision):
        refused = ", ".join(f"{c.region}/{c.node}: {c.reason}" for c in choice) or "none known"
        return [requested, ReceiveFailed(reason="no_node", detail=f"candidates: {refused}")]
    order = ReceiveDispatched(
        region=choice.region, node=choice.node, amount_msat=command.amount_msat,
        memo=command.memo, expiry_s=command.expiry_s, reason=choice.reason,
    )  # fmt: skip
    return [requested, order]


def _report(state: ReceiveIntent, report: RecordInvoiceState) -> list[EventData]:
    if state.node is None or report.node != state.node or report.region != state.node_region:
        raise errors.CorridorError(
            f"receive {state.intent_id} was not dispatched to {report.region}/{report.node}",
            field="node",
            code="wrong_node",
        )
    match report.state:
        case "issued":
            return _issued(state, report)
        case "paid":
            return _paid(state, report)
        case "expired":
            return _expired(state, report)
        case "failed":
            if state.status is R.DISPATCHED:
                return [ReceiveFailed(reason="node_refused", detail=report.detail)]
            return []  # issued already (a stale report of an earlier delivery)
    raise AssertionError(report.state)


def _issued_event(state: ReceiveIntent, report: RecordInvoiceState) -> InvoiceIssued:
    if report.payment_hash is None or report.payment_request is None:
        raise errors.MissingField(
            "an issued or paid invoice needs payment_hash and payment_request",
            field="payment_request",
        )
    if report.expires_at_s is None:
        raise errors.MissingField("an issued invoice needs expires_at_s", field="expires_at_s")
    return InvoiceIssued(
        node=report.node, payment_hash=report.payment_hash,
        payment_request=report.payment_request, expires_at_s=report.expires_at_s,
    )  # fmt: skip


def _same_invoice(state: ReceiveIntent, report: RecordInvoiceState) -> None:
    if state.payment_hash is not None and report.payment_hash != state.payment_hash:
        raise errors.CorridorError(
            f"receive {state.intent_id} has invoice {state.payment_hash}, not "
            f"{report.payment_hash}",
            field="payment_hash",
            code="invoice_mismatch",
        )


def _issued(state: ReceiveIntent, report: RecordInvoiceState) -> list[EventData]:
    if state.status is R.DISPATCHED:
        return [_issued_event(state, report)]
    if state.status is R.FAILED:
        raise errors.InvalidTransition(
            f"receive {state.intent_id} failed: no invoice is recorded for it", field="state"
        )
    _same_invoice(state, report)
    return []


def _paid(state: ReceiveIntent, report: RecordInvoiceState) -> list[EventData]:
    _same_invoice(state, report)
    if state.status is R.PAID:
        return []  # credited once: a redelivery or a resumed follower reports it again
    if state.status is R.FAILED:
        raise errors.InvalidTransition(
            f"receive {state.intent_id} failed, yet its node reports it paid", field="state"
        )
    if report.preimage is None or report.amount_received_msat is None or report.pay_index is None:
        raise errors.MissingField(
            "a paid invoice needs preimage, amount_received_msat and pay_index", field="preimage"
        )
    if report.payment_hash is None or (
        hashlib.sha256(bytes.fromhex(report.preimage)).hexdigest() != report.payment_hash
    ):
        raise errors.CorridorError(
            "the preimage does not hash to the payment hash", field="preimage",
            code="invalid_preimage",
        )  # fmt: skip
    if report.amount_received_msat < state.amount_msat:
        raise errors.CorridorError(
            f"the node settled {report.amount_received_msat} msat of {state.amount_msat}",
            field="amount_received_msat",
            code="underpaid",
        )
    events: list[EventData] = []
    if state.status is R.DISPATCHED:
        # Paid before its issue was recorded (an order redelivered after a crash): both facts.
        events.append(_issued_event(state, report))
    paid = InvoicePaid(
        node=report.node, payment_hash=report.payment_hash,
        amount_received_msat=report.amount_received_msat, preimage=report.preimage,
        pay_index=report.pay_index, paid_at_s=report.paid_at_s, late=state.status is R.EXPIRED,
    )  # fmt: skip
    return [*events, paid]


def _expired(state: ReceiveIntent, report: RecordInvoiceState) -> list[EventData]:
    _same_invoice(state, report)
    if state.status is R.ISSUED:
        assert state.payment_hash is not None
        return [InvoiceExpired(node=report.node, payment_hash=state.payment_hash)]
    if state.status is R.DISPATCHED:
        raise errors.InvalidTransition(
            f"receive {state.intent_id}: no invoice was recorded to expire", field="state"
        )
    return []  # paid (the settlement wins), expired already, or failed
