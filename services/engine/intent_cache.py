"""The writer loop's committed-state cache: the last known state per intent stream.

Bounded LRU. ``None`` means "no such stream" when the writer loop last looked; the read side
never trusts that (``read_side.py``), and only the writer loop writes here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from services.domain.intent import PaymentIntent, fold
from services.engine.event_codec import to_domain
from services.eventstore.port import EventStore


class IntentCache:
    def __init__(self, store: EventStore, *, cache_max: int) -> None:
        assert cache_max >= 1
        self._store = store
        self._cache: OrderedDict[str, PaymentIntent | None] = OrderedDict()
        self._cache_max = cache_max

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._cache

    def get(self, stream_id: str) -> PaymentIntent | None:
        return self._cache.get(stream_id)

    def remember(self, stream_id: str, state: PaymentIntent | None) -> None:
        self._cache[stream_id] = state
        self._cache.move_to_end(stream_id)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        self._cache.pop(stream_id, None)

    async def load(self, stream_ids: Sequence[str]) -> None:
        """Read and fold the streams not cached yet, in one round trip."""
        missing = [s for s in dict.fromkeys(stream_ids) if s not in self._cache]
        if not missing:
            return
        loaded = await self._store.read_streams(missing)
        for stream_id in missing:
            history = loaded.get(stream_id, [])
            self.remember(stream_id, fold(to_domain(e) for e in history))
