"""The receive state machine in one place: every allowed transition. Anything not listed is
refused. Key: (status before, event type) -> status after; ``None`` is "no stream yet".

``EXPIRED -> PAID``: the node's settlement is the fact. An invoice settled in the moment the
expiry was recorded is still credited, once (``InvoicePaid.late``); a payment is never lost to
the expiry rule (ADR 0220).
"""

from __future__ import annotations

from typing import Final

from services.domain.receive.status import ReceiveStatus as S

TERMINAL_STATUSES: Final = frozenset({S.PAID, S.FAILED})
# Final for the caller; only the node's late settlement can still move an expired receive.
FINAL_STATUSES: Final = frozenset({S.PAID, S.FAILED, S.EXPIRED})

TRANSITIONS: Final[dict[tuple[S | None, str], S]] = {
    (None, "ReceiveRequested"): S.REQUESTED,
    (S.REQUESTED, "ReceiveDispatched"): S.DISPATCHED,
    (S.REQUESTED, "ReceiveFailed"): S.FAILED,
    (S.DISPATCHED, "InvoiceIssued"): S.ISSUED,
    (S.DISPATCHED, "ReceiveFailed"): S.FAILED,
    (S.ISSUED, "InvoicePaid"): S.PAID,
    (S.ISSUED, "InvoiceExpired"): S.EXPIRED,
    (S.EXPIRED, "InvoicePaid"): S.PAID,
}

# The status each event leads to, for folds over recorded events by type name (projections).
STATUS_AFTER: Final = {event: after for (_, event), after in TRANSITIONS.items()}
