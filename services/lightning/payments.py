"""Adapter-independent pieces of paying: what an invoice asks for, and liquidity from channels."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from services.bolt11.codec import invoice_facts
from services.lightning.port import (
    Channel,
    FailureReason,
    LiquiditySummary,
    PaymentFailed,
    PaymentResult,
    PaymentSucceeded,
    PayRequest,
)


def invoice_target(request: PayRequest) -> tuple[str, int, bool]:
    """(payment hash, amount to deliver, whether the invoice left the amount open) of an
    invoice payment. Raises ``ValueError`` (``InvoiceDecodeError`` for a bad invoice) before
    any node call."""
    assert request.payment_request is not None
    facts = invoice_facts(request.payment_request, request.payment_hash)
    if request.payment_hash is not None and request.payment_hash != facts.payment_hash:
        raise ValueError("payment_hash does not match the payment request")
    if facts.amount_msat is None:
        if request.amount_msat is None or request.amount_msat <= 0:
            raise ValueError("the invoice has no amount: amount_msat is required")
        return facts.payment_hash, request.amount_msat, True
    # Nodes refuse an amount for an invoice that names one (lnd router_backend.go, CLN pay).
    if request.amount_msat not in (None, facts.amount_msat):
        raise ValueError("amount_msat differs from the invoice amount")
    return facts.payment_hash, facts.amount_msat, False


def keysend_target(request: PayRequest) -> tuple[str, int]:
    """(payment hash, amount) of a keysend whose preimage the caller chose; raises
    ``ValueError`` before any node call."""
    if request.destination is None or request.amount_msat is None or request.amount_msat <= 0:
        raise ValueError("a payment needs payment_request, or destination and amount_msat")
    if request.keysend_preimage is None:
        raise ValueError("keysend needs keysend_preimage so that retries reuse one hash")
    derived = hashlib.sha256(bytes.fromhex(request.keysend_preimage)).hexdigest()
    if request.payment_hash is not None and request.payment_hash != derived:
        raise ValueError("payment_hash is not the hash of keysend_preimage")
    return derived, request.amount_msat


def for_amount(record: PaymentResult, amount_msat: int) -> PaymentResult:
    """A node's record of a hash as the answer to paying ``amount_msat`` with it: a success
    for another amount paid someone else's request, not this one."""
    if isinstance(record, PaymentSucceeded) and record.amount_msat != amount_msat:
        return PaymentFailed(
            payment_hash=record.payment_hash,
            reason=FailureReason.ALREADY_PAID,
            detail=f"hash already paid with {record.amount_msat} msat",
        )
    return record


def liquidity_of(channels: Sequence[Channel]) -> LiquiditySummary:
    active = [chan for chan in channels if chan.active]
    return LiquiditySummary(
        channels=len(channels),
        active_channels=len(active),
        outbound_msat=sum(chan.local_balance_msat for chan in active),
        inbound_msat=sum(chan.remote_balance_msat for chan in active),
        max_sendable_msat=max((chan.local_balance_msat for chan in active), default=0),
    )
