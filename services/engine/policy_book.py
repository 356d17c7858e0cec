"""The policy document this engine judges by: the one stream, loaded at start, kept current by
the writer loop, and marked stale when another engine may have moved it (ADR 0073, 0074)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import structlog

from schemas.events import EventData
from schemas.policy_messages import PolicyProposed
from services.domain.policy import Policy, PolicyDocumentAggregate, PolicyEngine, fold_policy
from services.engine.event_codec import POLICY_STREAM, to_domain
from services.eventstore.port import EventStore, StoredEvent

log = structlog.get_logger("corridor.processor")


class PolicyBook:
    def __init__(
        self,
        store: EventStore,
        *,
        fallback: Callable[[], Policy],
        baseline_version: int = 0,
    ) -> None:
        self._store = store
        # The policy judged by while the log holds no active document (settings or a test's).
        self.fallback = fallback
        self.baseline_version = baseline_version
        self.state: PolicyDocumentAggregate | None = None
        self.stale = True
        self.active: Policy | None = None

    def in_force(self) -> Policy:
        return self.active or self.fallback()

    @property
    def version(self) -> int:
        """The stream's version as this engine knows it (the append's policy fence)."""
        return self.state.version if self.state else 0

    async def load(self) -> None:
        history = await self._store.read_stream(POLICY_STREAM)
        events = [policy_event(e) for e in history]
        self.adopt(fold_policy(events) if events else None)  # type: ignore[arg-type]
        self.stale = False

    def adopt(self, state: PolicyDocumentAggregate | None) -> None:
        previous = self.state.active_version if self.state else None
        self.state = state
        if state is not None and state.active is not None and state.active_version != previous:
            self.active = PolicyEngine(state.active)
            log.info("policy_activated", policy_version=state.active_version)
        elif state is None or state.active is None:
            self.active = None


def policy_event(stored: StoredEvent) -> EventData:
    event = to_domain(stored)
    if isinstance(event, PolicyProposed) and event.proposed_at_ms is None:
        # Logged before proposals carried their time: the time it was recorded is that time.
        return msgspec.structs.replace(event, proposed_at_ms=stored.recorded_at_ms)
    return event
