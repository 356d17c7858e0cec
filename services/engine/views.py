"""Read-side replies built from in-memory state: an intent's outcome, the policy, the corridors.

Pure: each function turns state the engine already holds into a reply, so what a caller reads
is what the running engine enforces, not a file on someone's disk.
"""

from __future__ import annotations

from schemas.events import NodeFailure
from schemas.policy_document import PolicyDocument
from schemas.replies import (
    CommandAccepted,
    CorridorCandidate,
    CorridorRoutes,
    CorridorsView,
    PendingPolicy,
    PolicyView,
)
from services.domain.intent import IntentStatus, PaymentIntent
from services.domain.policy import PolicyDocumentAggregate
from services.domain.routing import CorridorTable


def why_unpaid(state: PaymentIntent) -> tuple[str | None, tuple[NodeFailure, ...]]:
    """The reason code of an intent that ended ``rejected`` or ``failed``, and for a failed one
    the nodes it failed on; ``(None, ())`` for any other state."""
    if state.status is IntentStatus.FAILED:
        return state.failure_reason, state.failures
    if state.status is IntentStatus.REJECTED:
        return state.failure_reason, ()
    return None, ()


def accepted(state: PaymentIntent, *, duplicate: bool) -> CommandAccepted:
    """The reply to a committed (or duplicate) command, saying why when the intent ended unpaid.

    ``state.explanation`` is only kept while the policy decides the intent's fate (rejected by
    policy, or waiting for an operator), so a running intent's reply carries none.
    """
    reason, failures = why_unpaid(state)
    return CommandAccepted(
        intent_id=state.intent_id,
        state=str(state.status),
        duplicate=duplicate,
        reason=reason,
        explanation=state.explanation,
        failures=failures,
    )


def policy_view(document: PolicyDocument, state: PolicyDocumentAggregate | None) -> PolicyView:
    """The document in force and the proposals that wait for a second operator, by version."""
    pending = []
    for version, proposal in sorted(state.pending.items() if state else ()):
        # The engine fills the time of proposals logged before the field existed from the log.
        assert proposal.proposed_at_ms is not None, f"policy version {version} without a time"
        pending.append(
            PendingPolicy(
                policy_version=version,
                proposed_by=proposal.proposer_id,
                proposed_at_ms=proposal.proposed_at_ms,
            )
        )
    return PolicyView(policy_version=document.version, document=document, pending=tuple(pending))


def corridors_view(table: CorridorTable) -> CorridorsView:
    """Every corridor by name, its candidates in the order the router tries them (rank 1 first)."""
    return CorridorsView(
        corridors=tuple(
            CorridorRoutes(
                corridor=name,
                candidates=tuple(
                    CorridorCandidate(rank=rank, region=c.region, node=c.node, keysend=c.keysend)
                    for rank, c in enumerate(candidates, start=1)
                ),
            )
            for name, candidates in sorted(table.corridors.items())
        )
    )
