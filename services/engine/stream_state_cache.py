"""The writer loop's committed state of one kind of stream, folded by that kind's aggregate:
a bounded LRU that only the writer loop writes. Receive intents (ADR 0220) and channel
operations (ADR 0234) each keep one."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from schemas.events import EventData
from services.engine.event_codec import to_domain
from services.eventstore.port import EventStore

S = TypeVar("S")


class StreamStateCache(Generic[S]):
    def __init__(
        self,
        store: EventStore,
        *,
        cache_max: int,
        fold: Callable[[Iterable[EventData]], S | None],
    ) -> None:
        assert cache_max >= 1
        self._store = store
        self._fold = fold
        self._cache: OrderedDict[str, S | None] = OrderedDict()
        self._cache_max = cache_max

    def get(self, stream_id: str) -> S | None:
        return self._cache.get(stream_id)

    def known(self, stream_id: str) -> bool:
        """Whether the stream was read (a cached ``None`` is an empty stream, not unknown)."""
        return stream_id in self._cache

    def clear(self) -> None:
        self._cache.clear()

    def remember(self, stream_id: str, state: S | None) -> None:
        self._cache[stream_id] = state
        self._cache.move_to_end(stream_id)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        self._cache.pop(stream_id, None)

    async def load(self, stream_ids: Sequence[str]) -> None:
        """Read the streams not cached yet, in one round trip. Every command of these kinds
        reads its stream (none is assumed new): the append's stream version settles any race."""
        missing = [s for s in dict.fromkeys(stream_ids) if s not in self._cache]
        if not missing:
            return
        loaded = await self._store.read_streams(missing)
        for stream_id in missing:
            self.remember(stream_id, self._fold(to_domain(e) for e in loaded.get(stream_id, [])))
