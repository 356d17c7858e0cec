"""Only one relay publishes at a time: the leader holds the store's relay lease (PostgreSQL: an
advisory lock that lives and dies with its own connection, ADR 0091); others stand by. The same
lease hears the writers' commit announcements.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from services.eventstore.port import RELAY_LEASE, EventStore, Lease


class Leadership:
    def __init__(self, store: EventStore, *, poll_s: float) -> None:
        self._store = store
        self._poll_s = poll_s
        self._lease: Lease | None = None

    async def connect(self) -> None:
        self._lease = self._store.lease(RELAY_LEASE)

    async def acquire(self) -> None:
        """Return once this relay holds the lease (a standby waits here)."""
        lease = self._held_lease()
        while not await lease.acquire():
            await asyncio.sleep(self._poll_s)  # standby: poll for the leader's lease

    async def listen(self, on_notify: Callable[[int | None], None]) -> None:
        await self._held_lease().listen(on_notify)

    def lost(self) -> bool:
        """The lease lived on a session: once it is lost, another relay may hold it, and two
        publishing at once would interleave positions."""
        return not self._held_lease().held

    async def close(self) -> None:
        if self._lease is not None:
            with contextlib.suppress(Exception):
                await self._lease.release()
            self._lease = None

    def _held_lease(self) -> Lease:
        assert self._lease is not None, "connect() first"
        return self._lease
