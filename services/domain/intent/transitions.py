"""Every allowed transition, in one table. Anything not listed here is refused.

Key: (status before, event type) -> status after. ``None`` is "no stream yet".
Annotation events (``OutcomeIgnored``, ``PaymentAttemptFailed``) keep the status as it is and
are listed explicitly for each status where they may occur.
"""

from __future__ import annotations

from typing import Final

from services.domain.intent.state import AWAITING_EVIDENCE_STATUSES, ON_THE_WIRE_STATUSES
from services.domain.intent.state import PRE_DISPATCH_STATUSES as _PRE_DISPATCH
from services.domain.intent.state import IntentStatus as S

_ON_WIRE = tuple(sorted(ON_THE_WIRE_STATUSES))
_AWAITING_EVIDENCE = tuple(sorted(AWAITING_EVIDENCE_STATUSES))

TRANSITIONS: Final[dict[tuple[S | None, str], S]] = {
    (None, "IntentReceived"): S.RECEIVED,
    (S.RECEIVED, "IntentPolicyChecked"): S.POLICY_CHECKED,
    (S.POLICY_CHECKED, "IntentRejected"): S.REJECTED,
    (S.POLICY_CHECKED, "IntentApprovalRequested"): S.AWAITING_APPROVAL,
    (S.POLICY_CHECKED, "IntentRouted"): S.ROUTED,
    (S.POLICY_CHECKED, "IntentFailed"): S.FAILED,  # no route candidate at all
    (S.AWAITING_APPROVAL, "IntentApproved"): S.POLICY_CHECKED,
    (S.AWAITING_APPROVAL, "IntentRejected"): S.REJECTED,
    (S.ROUTED, "IntentDispatched"): S.DISPATCHED,
    (S.DISPATCHED, "PaymentInFlightReported"): S.IN_FLIGHT,
    (S.SUCCEEDED, "IntentSettled"): S.SETTLED,
    **{(s, "IntentCancelled"): S.CANCELLED for s in _PRE_DISPATCH},
    **{(s, "IntentExpired"): S.EXPIRED for s in _PRE_DISPATCH},
    **{(s, "PaymentSucceeded"): S.SUCCEEDED for s in _ON_WIRE},
    **{(s, "PaymentAttemptFailed"): s for s in _ON_WIRE},
    **{(s, "PaymentInDoubt"): S.IN_FLIGHT for s in _ON_WIRE},
    # Re-route after a failure proven not to have paid, or give up.
    **{(s, "IntentRouted"): S.ROUTED for s in _ON_WIRE},
    **{(s, "IntentFailed"): S.FAILED for s in _ON_WIRE},
    **{(s, "OutcomeIgnored"): s for s in S},
    # The way out of a node that never answers, or of a success without proof: an exception
    # item (kept status), then the operator's decision, followed by its effect (below).
    **{(s, "IntentEscalated"): s for s in _AWAITING_EVIDENCE},
    **{(s, "IntentResolved"): s for s in _AWAITING_EVIDENCE},
    # A preimage found later (the node re-queried, or the operator's evidence) settles it; an
    # operator's "not paid" fails it.
    (S.SUCCEEDED, "IntentFailed"): S.FAILED,
}


def next_status(status: S | None, event_type: str) -> S | None:
    """The status after ``event_type``, or ``None`` if the transition is not allowed."""
    return TRANSITIONS.get((status, event_type))
