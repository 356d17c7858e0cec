"""The intent state machine, in one place: every allowed transition, the sets of statuses the
rest of the code asks about, and the status each event leads to. Anything not listed in
``TRANSITIONS`` is refused.

Key: (status before, event type) -> status after. ``None`` is "no stream yet".
Annotation events (``OutcomeIgnored``, ``AnomalyAcknowledged``, ``PaymentAttemptFailed``) keep
the status as it is and are listed explicitly for each status where they may occur.

Everything else imports from here (the aggregate, the deadline scheduler, the projections, the
drills' ledger check); ``tests/unit/test_state_machine_source.py`` fails if a module spells a
status set or an event-to-status map of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from services.domain.intent.status import IntentStatus as S

TERMINAL_STATUSES: Final = frozenset({S.SETTLED, S.FAILED, S.CANCELLED, S.EXPIRED, S.REJECTED})
# Before dispatch nothing can be on the wire, so cancelling or expiring is safe.
PRE_DISPATCH_STATUSES: Final = frozenset(
    {S.RECEIVED, S.POLICY_CHECKED, S.AWAITING_APPROVAL, S.ROUTED}
)
ON_THE_WIRE_STATUSES: Final = frozenset({S.DISPATCHED, S.IN_FLIGHT})
# Where only the node's evidence, or an operator's recorded decision, may end an intent: on the
# wire, or ``succeeded`` without a preimage proving it (a proven success settles at once).
AWAITING_EVIDENCE_STATUSES: Final = ON_THE_WIRE_STATUSES | {S.SUCCEEDED}

_PRE_DISPATCH = tuple(sorted(PRE_DISPATCH_STATUSES))
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
    # An operator's acknowledgement of the anomalies above: an annotation wherever they occur.
    **{(s, "AnomalyAcknowledged"): s for s in S},
    # The way out of a node that never answers, or of a success without proof: an exception
    # item (kept status), then the operator's decision, followed by its effect (below).
    **{(s, "IntentEscalated"): s for s in _AWAITING_EVIDENCE},
    **{(s, "IntentResolved"): s for s in _AWAITING_EVIDENCE},
    # A preimage found later (the node re-queried, or the operator's evidence) settles it; an
    # operator's "not paid" fails it.
    (S.SUCCEEDED, "IntentFailed"): S.FAILED,
}


def _status_after() -> dict[str, S]:
    targets: dict[str, set[S]] = {}
    for (_, event_type), after in TRANSITIONS.items():
        targets.setdefault(event_type, set()).add(after)
    return {event: next(iter(after)) for event, after in targets.items() if len(after) == 1}


# The status an event leads to whatever the status before: every event of the machine except
# the annotations, which keep the status as it is. For folds that follow statuses without the
# aggregate (projections over recorded events, by type name).
STATUS_AFTER: Final[Mapping[str, S]] = _status_after()
# The events after which an intent is no longer awaiting the node's evidence: it ended, or it
# was routed anew after a failure proven not to have paid.
OFF_THE_WIRE_EVENTS: Final = frozenset(
    e for e, s in STATUS_AFTER.items() if s not in AWAITING_EVIDENCE_STATUSES
)


def next_status(status: S | None, event_type: str) -> S | None:
    """The status after ``event_type``, or ``None`` if the transition is not allowed."""
    return TRANSITIONS.get((status, event_type))
