"""The tail every stream-of-its-own kind (receives, rebalances, channel operations)
runs once its aggregate has decided: the reply (a duplicate answers the recorded state,
``duplicate: true``), the state after the decided events, and those events with their
metadata added to the batch's plan.
Idempotency itself is the aggregate's (same key and request: no events; another request:
``idempotency_mismatch``); this module only turns its answer into the plan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from schemas.events import EventData
from schemas.records import EventMetadata
from schemas.replies import CommandAccepted
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, actor
from services.engine.event_codec import to_new_events

S = TypeVar("S")


def accepted(
    stream_id: str, status: str, *, duplicate: bool, reason: str | None = None
) -> CommandAccepted:
    return CommandAccepted(intent_id=stream_id, state=status, duplicate=duplicate, reason=reason)


def evolved(
    state: S | None, events: Sequence[EventData], evolve: Callable[[S | None, EventData], S]
) -> S:
    """The stream's state after the decided ``events``: what the batch's plan holds for it
    until the commit. A duplicate decides no events and is answered before this."""
    assert events, "a duplicate has nothing to evolve"
    new_state = state
    for event in events:
        new_state = evolve(new_state, event)
    assert new_state is not None
    return new_state


def add_events(
    plan: BatchPlan,
    item: QueuedCommand,
    stream_id: str,
    first_version: int,
    events: Sequence[EventData],
    *,
    owner: str,
    new_id: Callable[[], str],
    now_ms: int,
) -> None:
    """Append ``events`` to ``stream_id`` from ``first_version`` in this batch's plan, with
    the command's correlation, its authenticated actor and ``owner`` (the caller whose
    subtree the relay publishes them under, ADR 0067)."""
    if not events:
        return
    metadata = EventMetadata(
        correlation_id=item.envelope.correlation_id or item.stream_id,
        causation_id=item.envelope.causation_id or new_id(),
        actor=actor(item.envelope),
        owner=owner,
    )
    plan.events += to_new_events(stream_id, first_version, list(events), metadata, now_ms)
