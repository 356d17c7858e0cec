"""One node's reconciliation items and circuit breaker, as a pure aggregate (ADR 0151).

The stream ``reconciliation-<node>`` holds every disagreement found on the node (one item per
key, however often a pass finds it), its resolution, and the breaker's trips and clears.
``decide`` is idempotent by construction: an item already open is not found again, an item
not open is not resolved, and a breaker not tripped is not cleared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from schemas import errors
from schemas.events import EventData
from schemas.reconciliation_messages import (
    ClearNodeBreaker,
    NodeBreakerCleared,
    NodeBreakerTripped,
    ReconciliationCommand,
    ReconciliationMismatchFound,
    ReconciliationMismatchResolved,
    ReportReconciliation,
    ResolveReconciliationMismatch,
)

UNEXPECTED = "unexpected_payment"


@dataclass(frozen=True, slots=True)
class NodeLedger:
    node: str
    region: str = ""
    open: dict[str, ReconciliationMismatchFound] = field(default_factory=dict)
    tripped: bool = False
    version: int = 0

    def open_unexpected(self) -> list[ReconciliationMismatchFound]:
        return [item for item in self.open.values() if item.category == UNEXPECTED]


def decide(state: NodeLedger, command: ReconciliationCommand, *, now_ms: int) -> list[EventData]:
    assert command.node == state.node, "a command is decided on its own node's stream"
    match command:
        case ReportReconciliation():
            return _report(state, command, now_ms)
        case ResolveReconciliationMismatch():
            item = state.open.get(command.key)
            if item is None:
                raise errors.NotFound(f"no open reconciliation item {command.key!r}", field="key")
            return [
                _resolved(item, now_ms, operator_id=command.operator_id, reason=command.reason,
                          evidence=command.evidence)
            ]  # fmt: skip
        case ClearNodeBreaker():
            if not state.tripped:
                return []
            out: list[EventData] = [
                _resolved(item, now_ms, operator_id=command.operator_id, reason=command.reason)
                for item in state.open_unexpected()
            ]
            out.append(
                NodeBreakerCleared(
                    node=state.node,
                    region=state.region,
                    operator_id=command.operator_id,
                    reason=command.reason,
                    cleared_at_ms=now_ms,
                )
            )
            return out
    raise AssertionError(f"unhandled command {type(command).__name__}")


def _report(state: NodeLedger, command: ReportReconciliation, now_ms: int) -> list[EventData]:
    out: list[EventData] = []
    tripping = state.tripped
    for finding in command.found:
        if finding.key in state.open or any(
            isinstance(e, ReconciliationMismatchFound) and e.key == finding.key for e in out
        ):
            continue
        out.append(
            ReconciliationMismatchFound(
                node=state.node,
                region=command.region,
                key=finding.key,
                category=finding.category,
                payment_hash=finding.payment_hash,
                intent_id=finding.intent_id,
                attempt=finding.attempt,
                evidence=dict(finding.evidence),
                found_at_ms=now_ms,
            )
        )
        if finding.category == UNEXPECTED and command.trip_breaker and not tripping:
            tripping = True
            out.append(
                NodeBreakerTripped(
                    node=state.node,
                    region=command.region,
                    key=finding.key,
                    tripped_at_ms=now_ms,
                )
            )
    for key in dict.fromkeys(command.consistent):
        item = state.open.get(key)
        # An unexpected payment stays open until an operator explains it (ADR 0151).
        if item is not None and item.category != UNEXPECTED:
            out.append(
                _resolved(item, now_ms, operator_id=None, reason="consistent on a later pass")
            )
    return out


def _resolved(
    item: ReconciliationMismatchFound,
    now_ms: int,
    *,
    operator_id: str | None,
    reason: str,
    evidence: str = "",
) -> ReconciliationMismatchResolved:
    return ReconciliationMismatchResolved(
        node=item.node,
        key=item.key,
        category=item.category,
        by="operator" if operator_id is not None else "reconciler",
        operator_id=operator_id,
        reason=reason,
        evidence=evidence,
        found_at_ms=item.found_at_ms,
        resolved_at_ms=now_ms,
    )


def evolve(state: NodeLedger, event: EventData) -> NodeLedger:
    match event:
        case ReconciliationMismatchFound():
            assert event.key not in state.open, "an open item is never found twice"
            opened = {**state.open, event.key: event}
            return replace(state, region=event.region, open=opened, version=state.version + 1)
        case ReconciliationMismatchResolved():
            assert event.key in state.open, "only an open item is resolved"
            rest = {k: v for k, v in state.open.items() if k != event.key}
            return replace(state, open=rest, version=state.version + 1)
        case NodeBreakerTripped():
            assert not state.tripped, "a tripped breaker does not trip again"
            return replace(state, region=event.region, tripped=True, version=state.version + 1)
        case NodeBreakerCleared():
            assert state.tripped, "only a tripped breaker is cleared"
            return replace(state, tripped=False, version=state.version + 1)
    raise AssertionError(f"not a reconciliation event: {type(event).__name__}")


def fold(node: str, events: Iterable[EventData]) -> NodeLedger:
    state = NodeLedger(node=node)
    for event in events:
        state = evolve(state, event)
    return state
