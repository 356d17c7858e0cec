"""The writer loop's committed state of receive intents (ADR 0220): the ``IntentCache`` of
receive streams, folded with the receive aggregate. Bounded LRU; only the writer loop writes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from services.domain.receive import ReceiveIntent, fold
from services.engine.event_codec import to_domain
from services.eventstore.port import EventStore


class ReceiveCache:
    def __init__(self, store: EventStore, *, cache_max: int) -> None:
        assert cache_max >= 1
        self._store = store
        self._cache: OrderedDict[str, ReceiveIntent | None] = OrderedDict()
        self._cache_max = cache_max

    def get(self, stream_id: str) -> ReceiveIntent | None:
        return self._cache.get(stream_id)

    def remember(self, stream_id: str, state: ReceiveIntent | None) -> None:
        self._cache[stream_id] = state
        self._cache.move_to_end(stream_id)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        self._cache.pop(stream_id, None)

    async def load(self, stream_ids: Sequence[str]) -> None:
        """Read the streams not cached yet, in one round trip. Every receive command reads
        its stream (none is assumed new): the append's stream version settles any race."""
        missing = [s for s in dict.fromkeys(stream_ids) if s not in self._cache]
        if not missing:
            return
        loaded = await self._store.read_streams(missing)
        for stream_id in missing:
            self.remember(stream_id, fold(to_domain(e) for e in loaded.get(stream_id, [])))
