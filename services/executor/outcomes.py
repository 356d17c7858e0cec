"""From the node's evidence to the ``RecordPaymentOutcome`` command (pure).

A failure is only ever built from the node's own record (a final ``failed`` status, or no
record at all for the hash), so every failed outcome carries ``confirmed_not_paid=True``;
without such evidence the executor reports nothing and the work order comes back later.
"""

from __future__ import annotations

from schemas import limits
from schemas.commands import RecordPaymentOutcome
from services.executor.work_order import WorkOrder
from services.lightning.port import FailureReason, PaymentFailed, PaymentSucceeded


def succeeded(order: WorkOrder, result: PaymentSucceeded) -> RecordPaymentOutcome:
    assert result.fee_msat >= 0, "fees are never negative"
    return RecordPaymentOutcome(
        intent_id=order.intent_id,
        attempt=order.attempt,
        region=order.region,
        node=order.node,
        outcome="succeeded",
        payment_hash=result.payment_hash,
        preimage=result.preimage,
        fee_msat=result.fee_msat,
    )


def failed_with_proof(
    order: WorkOrder, payment_hash: str | None, result: PaymentFailed
) -> RecordPaymentOutcome:
    """``result`` must be the node's record (or the node's lack of one): that is the proof."""
    return RecordPaymentOutcome(
        intent_id=order.intent_id,
        attempt=order.attempt,
        region=order.region,
        node=order.node,
        outcome="failed",
        payment_hash=payment_hash,
        failure_reason=FailureReason(result.reason).value,
        confirmed_not_paid=True,
        detail=_storable(result.detail)[: limits.REASON_CHARS_MAX],
    )


def in_flight(order: WorkOrder, payment_hash: str) -> RecordPaymentOutcome:
    return RecordPaymentOutcome(
        intent_id=order.intent_id,
        attempt=order.attempt,
        region=order.region,
        node=order.node,
        outcome="in_flight",
        payment_hash=payment_hash,
    )


def _storable(text: str) -> str:
    """A node's error text as the engine stores it: its own outcome must never be refused
    for a character in a node's message (schemas/storable.py refuses U+0000)."""
    if not text.isascii():
        text = text.encode(errors="replace").decode()  # a lone surrogate becomes "?"
    return text.replace(limits.TEXT_CHARS_FORBIDDEN, "\ufffd")
