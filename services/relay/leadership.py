"""Only one relay publishes at a time: the leader holds a PostgreSQL advisory lock, which lives
and dies with its connection; others stand by. The same connection hears the writers' NOTIFYs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

_LEADER_LOCK_KEY = 0x72656C61  # "rela"


class Leadership:
    def __init__(self, dsn: str, *, poll_s: float) -> None:
        self._dsn = dsn
        self._poll_s = poll_s
        self._conn: asyncpg.Connection[Any] | None = None

    async def connect(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)

    async def acquire(self) -> None:
        """Return once this relay holds the lock (a standby waits here)."""
        conn = self._connection()
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK_KEY):
            await asyncio.sleep(self._poll_s)  # standby: poll for the leader's lock

    async def listen(self, on_notify: Callable[[Any, int, str, object], None]) -> None:
        await self._connection().add_listener("corridor_events", on_notify)

    def lost(self) -> bool:
        """The lock lived on the connection: once it is closed, another relay may hold it,
        and two publishing at once would interleave positions."""
        return self._connection().is_closed()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    def _connection(self) -> asyncpg.Connection[Any]:
        assert self._conn is not None, "connect() first"
        return self._conn
