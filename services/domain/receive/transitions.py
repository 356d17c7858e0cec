"""The receive state machine in one place: every allowed transition. Anything not listed is
refused. Key: (status before, event type) -> status after; ``None`` is "no stream yet".

``EXPIRED -> PAID``: the node's settlement is the fact. An invoice settled in the moment the
expiry was recorded is still credited, once (``InvoicePaid.late``); a payment is never lost to
the expiry rule (ADR 0220).
"""

from __future__ import annotations

from typing import Final

from services.domain.receive.status import ReceiveStatus as R

TERMINAL_STATUSES: Final = frozenset({R.PAID, R.FAILED})
# Final for the caller; only the node's late settlement can still move an expired receive.
FINAL_STATUSES: Final = frozenset({R.PAID, R.FAILED, R.EXPIRED})

TRANSITIONS: Final[dict[tuple[R | None, str], R]] = {
    (None, "ReceiveRequested"): R.REQUESTED,
    (R.REQUESTED, "ReceiveDispatched"): R.DISPATCHED,
    (R.REQUESTED, "ReceiveFailed"): R.FAILED,
    (R.DISPATCHED, "InvoiceIssued"): R.ISSUED,
    (R.DISPATCHED, "ReceiveFailed"): R.FAILED,
    (R.ISSUED, "InvoicePaid"): R.PAID,
    (R.ISSUED, "InvoiceExpired"): R.EXPIRED,
    (R.EXPIRED, "InvoicePaid"): R.PAID,
}

# The status each event leads to, for folds over recorded events by type name (projections).
STATUS_AFTER: Final = {event: after for (_, event), after in TRANSITIONS.items()}
