"""One reconciliation command in the writer loop: decide, evolve, events to append, the reply.

The processor only routes the command here and adopts the node's new ledger once the batch is
committed (ADR 0151), as it does for agent keys (``agent_key_planning.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from schemas import errors
from schemas.reconciliation_messages import (
    ClearNodeBreaker,
    NodeBreakerTripped,
    ReconciliationCommand,
    ReconciliationCommandAccepted,
    ReconciliationMismatchFound,
    ReconciliationMismatchResolved,
    ReportReconciliation,
    ResolveReconciliationMismatch,
    reconciliation_stream,
)
from schemas.records import EventMetadata
from schemas.replies import CommandRejected
from services.domain.reconciliation.ledger import NodeLedger, decide, evolve
from services.engine.event_codec import to_new_events
from services.eventstore.port import NewEvent

if TYPE_CHECKING:
    from services.engine.commands import CommandEnvelope

RECONCILIATION_COMMANDS: Final = (
    ReportReconciliation,
    ResolveReconciliationMismatch,
    ClearNodeBreaker,
)


def plan_reconciliation_command(
    ledger: NodeLedger,
    command: ReconciliationCommand,
    envelope: CommandEnvelope,
    *,
    now_ms: int,
    new_id: Callable[[], str],
    actor: str,
) -> tuple[ReconciliationCommandAccepted | CommandRejected, NodeLedger | None, list[NewEvent]]:
    """``(reply, the ledger after this command or None if unchanged, events to append)``."""
    try:
        new_events = decide(ledger, command, now_ms=now_ms)
    except errors.CorridorError as exc:
        return CommandRejected(error=exc.detail()), None, []
    if not new_events:
        return ReconciliationCommandAccepted(node=command.node, duplicate=True), None, []
    after = ledger
    for event in new_events:
        after = evolve(after, event)
    stream = reconciliation_stream(command.node)
    metadata = EventMetadata(
        correlation_id=envelope.correlation_id or stream,
        causation_id=envelope.causation_id or new_id(),
        actor=actor,
    )
    stored = to_new_events(stream, ledger.version + 1, new_events, metadata, now_ms)
    reply = ReconciliationCommandAccepted(
        node=command.node,
        found=sum(isinstance(e, ReconciliationMismatchFound) for e in new_events),
        resolved=sum(isinstance(e, ReconciliationMismatchResolved) for e in new_events),
        breaker_tripped=any(isinstance(e, NodeBreakerTripped) for e in new_events),
    )
    return reply, after, stored
