"""What to send for a work order: the payment hash (our idempotency key) and the request."""

from __future__ import annotations

import msgspec

from services.bolt11.codec import decode_invoice
from services.executor.keysend import keysend_preimage
from services.executor.rebalance_worker import RebalanceWorkOrder
from services.executor.work_order import WorkOrder
from services.lightning.port import PayRequest


class PayTarget(msgspec.Struct, frozen=True, kw_only=True):
    payment_hash: str
    request: PayRequest


def pay_target(order: WorkOrder, secret: bytes) -> PayTarget:
    """Raises ``ValueError`` when the work order's invoice cannot be paid as dispatched."""
    dispatched = order.dispatched
    timeout_s = float(dispatched.pay_timeout_s)
    if dispatched.payment_request is not None and dispatched.invoice_has_amount is not None:
        # The engine decoded and checked this invoice when it accepted the intent; its hash
        # and amount travel in the hash-chained work order, so no second decode is needed.
        assert dispatched.payment_hash is not None
        request = PayRequest(
            payment_request=dispatched.payment_request,
            amount_msat=None if dispatched.invoice_has_amount else dispatched.amount_msat,
            payment_hash=dispatched.payment_hash,
            max_fee_msat=dispatched.max_fee_msat,
            timeout_s=timeout_s,
            # A circular rebalance (ADR 0247): our own invoice, around the order's circle.
            circle=order.circle if isinstance(order, RebalanceWorkOrder) else None,
        )
        return PayTarget(payment_hash=dispatched.payment_hash, request=request)
    if dispatched.payment_request is not None:
        decoded = decode_invoice(dispatched.payment_request)
        if dispatched.payment_hash not in (None, decoded.payment_hash):
            raise ValueError("work order payment_hash differs from its invoice")
        if decoded.amount_msat not in (None, dispatched.amount_msat):
            raise ValueError("work order amount_msat differs from its invoice")
        request = PayRequest(
            payment_request=dispatched.payment_request,
            # An amountless invoice takes the intent's amount; otherwise the invoice fixes it.
            amount_msat=dispatched.amount_msat if decoded.amount_msat is None else None,
            payment_hash=decoded.payment_hash,
            max_fee_msat=dispatched.max_fee_msat,
            timeout_s=timeout_s,
        )
        return PayTarget(payment_hash=decoded.payment_hash, request=request)
    assert dispatched.destination is not None
    preimage, payment_hash = keysend_preimage(secret, order.intent_id, order.attempt)
    request = PayRequest(
        destination=dispatched.destination,
        amount_msat=dispatched.amount_msat,
        payment_hash=payment_hash,
        keysend_preimage=preimage,
        max_fee_msat=dispatched.max_fee_msat,
        timeout_s=timeout_s,
    )
    return PayTarget(payment_hash=payment_hash, request=request)
