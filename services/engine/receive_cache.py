"""The writer loop's committed state of receive intents (ADR 0220), folded with the receive
aggregate."""

from __future__ import annotations

from services.domain.receive import ReceiveIntent, fold
from services.engine.stream_state_cache import StreamStateCache
from services.eventstore.port import EventStore


class ReceiveCache(StreamStateCache[ReceiveIntent]):
    def __init__(self, store: EventStore, *, cache_max: int) -> None:
        super().__init__(store, cache_max=cache_max, fold=fold)
