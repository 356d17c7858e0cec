"""Whose intent an event belongs to, for events that do not say so themselves.

Every intent event the engine writes names its owner (the submitting caller) in its metadata,
and the relay publishes it under that caller's subtree of the event subjects (ADR 0067) with
no lookup. Events logged before that change carry no owner; for them the owner is the caller
of the intent's first event, ``IntentReceived``, read from the log once per batch for all the
intents the batch needs. That is a catch-up cost only: in the steady state nothing is read.
"""

from __future__ import annotations

import collections
from collections.abc import Collection
from typing import Final

from services.eventstore.port import EventStore

# Owners remembered between batches while an old log is caught up: an intent's events are
# spread over time, so a later batch often needs an owner an earlier one found. Bounded, as a
# log holds any number of intents; a forgotten owner is only read again.
OWNERS_CACHED_MAX: Final = 10_000


class OwnerLookup:
    """Intent id -> owner caller id, from the log's ``IntentReceived`` events."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._known: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self.reads = 0  # round trips to the log, for tests and the bench's curiosity

    async def owners(self, stream_ids: Collection[str]) -> dict[str, str | None]:
        """Each stream's owner; None for a stream with no ``IntentReceived`` (not an intent)."""
        result = {s: self._known[s] for s in stream_ids if s in self._known}
        missing = [s for s in stream_ids if s not in result]
        if missing:
            self.reads += 1
            found = await self._store.owners_of(missing)
            for stream_id in missing:
                result[stream_id] = found.get(stream_id)
                self._remember(stream_id, result[stream_id])
        return result

    def _remember(self, stream_id: str, owner: str | None) -> None:
        self._known[stream_id] = owner
        self._known.move_to_end(stream_id)
        while len(self._known) > OWNERS_CACHED_MAX:
            self._known.popitem(last=False)
