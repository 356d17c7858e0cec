"""Which simulated payment attempts an lnd node would have on record, and lnd's texts for them.

lnd checks an invoice's expiry before it registers the payment (``ValidatePayReqExpiry`` in
``zpay32``, called from ``lnrpc/routerrpc/router_backend.go``), so an attempt the simulator
failed as expired before locking any HTLC never exists in lnd's payment database: SendPaymentV2
answers with an error and TrackPaymentV2 knows nothing of it.
"""

from __future__ import annotations

import datetime

from services.lightning.port import FailureReason
from services.sim.records import SimPayment


def rejected_before_send(payment: SimPayment) -> bool:
    return (
        payment.status == "failed"
        and payment.failure_reason is FailureReason.INVOICE_EXPIRED
        and not payment.hops
    )


def lnd_visible(payment: SimPayment) -> bool:
    return not rejected_before_send(payment)


def latest_visible(attempts: list[SimPayment]) -> SimPayment | None:
    """The attempt lnd would report for a hash: the newest one it has on record."""
    for attempt in reversed(attempts):
        if lnd_visible(attempt):
            return attempt
    return None


def invoice_expired_text(created_at_s: int, expiry_s: int) -> str:
    # zpay32's text; the time is Go's default time.Time format.
    until = datetime.datetime.fromtimestamp(created_at_s + expiry_s, datetime.UTC)
    return f"invoice expired. Valid until {until:%Y-%m-%d %H:%M:%S} +0000 UTC"
