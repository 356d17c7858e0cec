"""Stream versions for the read side, many per round trip.

Every executor asks the engine for an attempt's status before it sends (ADR 0203), and an open
intent's cached state is trusted only when the log's version agrees (ADR 0074). One query per
question made the status path a database transaction per intent, which the bench showed as a
third of the engine's throughput. Questions that arrive while a query is out wait for the next
one, which asks for all of them at once: one round trip when quiet, a few per busy millisecond
under load, and the same answer the single query gave (the log's version at the time of the
round trip that answered).
"""

from __future__ import annotations

import asyncio
from typing import Final

from services.eventstore.port import EventStore

# Streams asked for in one round trip: a bounded ``ANY($1)`` array. A burst larger than this
# is answered in several round trips, one after the other.
PROBE_BATCH_MAX: Final = 512


class VersionProbe:
    def __init__(self, store: EventStore, *, batch_max: int = PROBE_BATCH_MAX) -> None:
        self._store = store
        self._batch_max = batch_max
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}
        self._running: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def version(self, stream_id: str) -> int:
        """The stream's last version in the log (0: none), from the next round trip."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(stream_id, []).append(future)
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            ids = list(self._waiting)[: self._batch_max]
            futures = {stream_id: self._waiting.pop(stream_id) for stream_id in ids}
            self.round_trips += 1
            try:
                versions = await self._store.stream_versions(ids)
            except Exception as exc:  # every question of this round gets the store's error
                for waiting in futures.values():
                    for future in waiting:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for stream_id, waiting in futures.items():
                for future in waiting:
                    if not future.done():
                        future.set_result(versions.get(stream_id, 0))
