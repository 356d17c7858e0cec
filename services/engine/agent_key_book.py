"""The engine's view of agent keys, built from the log (ADR 0068).

One stream, ``agent-keys``, folded at start (``load``) and replaced after every commit that
changes it (``adopt``), so a revocation is in force for the next command this engine decides.
Another engine process on the same database learns of a change by ``refresh``, which the
engine runs every ``REFRESH_INTERVAL_S``: a one-row query while nothing changed.

The intake verifies agent signatures against ``find`` (``AgentKeyLookup``); the writer loop
asks it again for the key of every agent submit it decides, so a key revoked after the intake
checked a command but before the command was decided is refused all the same.
"""

from __future__ import annotations

from typing import Final

import structlog

from schemas.agent_key_messages import AgentKeyEvent, AgentKeysView
from services.domain.agent_keys import AGENT_KEYS_STREAM, AgentKeyRegistry, fold
from services.engine.event_codec import to_domain
from services.eventstore.port import EventStore
from services.identity.agent_keys import AgentKey, IndexedAgentKeys, from_registry

log = structlog.get_logger("corridor.agent_keys")

# How soon a key change made by another engine process on the same database applies here.
# A revocation must hold "within seconds"; one cheap query a second is nothing.
REFRESH_INTERVAL_S: Final = 1.0


class AgentKeyBook:
    def __init__(self) -> None:
        self.state: AgentKeyRegistry | None = None
        self._lookup: IndexedAgentKeys = from_registry(None)
        self.stale = True

    def find(self, key_id: str) -> AgentKey | None:
        """An approved or revoked key; a proposal awaiting approval is not trusted: ``None``."""
        return self._lookup.find(key_id)

    @property
    def version(self) -> int:
        return self.state.version if self.state else 0

    def adopt(self, state: AgentKeyRegistry | None) -> None:
        if state is not None and state.version < self.version:
            return  # a refresh already brought a newer state
        self.state = state
        self._lookup = from_registry(state)
        self.stale = False

    async def load(self, store: EventStore) -> int:
        history = await store.read_stream(AGENT_KEYS_STREAM)
        events: list[AgentKeyEvent] = [to_domain(e) for e in history]  # type: ignore[misc]
        self.state = None  # the log is the authority: replace, do not merge
        self.adopt(fold(events))
        return len(events)

    async def refresh(self, store: EventStore) -> bool:
        """Read the stream again if the log holds more of it than this view; ``True`` if so."""
        head = await store.stream_version(AGENT_KEYS_STREAM)
        if head <= self.version and not self.stale:
            return False
        await self.load(store)
        log.info("agent_keys_refreshed", stream_version=self.version)
        return True

    def view(self, *, reader_id: str | None = None) -> AgentKeysView:
        """Every key; for ``reader_id`` only the keys it sponsors or is the agent of."""
        records = self.state.keys.values() if self.state else ()
        return AgentKeysView(
            keys=tuple(
                r.view()
                for r in sorted(records, key=lambda r: (r.agent_id, r.proposal.proposed_at_ms))
                if reader_id is None or reader_id in (r.sponsor_id, r.agent_id)
            )
        )
