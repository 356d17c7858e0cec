"""Commit announcements a lease hears, kept the same way by every store adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Announcements:
    """The highest position announced so far, listeners, and waiters for the next one."""

    def __init__(self) -> None:
        self.through = 0
        self._unknown = False  # an announcement that named no position, not yet waited out
        self._callbacks: list[Callable[[int | None], None]] = []
        self._changed = asyncio.Event()

    def listen(self, callback: Callable[[int | None], None]) -> None:
        self._callbacks.append(callback)

    def announce(self, position: int | None) -> None:
        if position is None:
            self._unknown = True
        else:
            self.through = max(self.through, position)
        self._changed.set()
        for callback in list(self._callbacks):
            callback(position)

    async def wait_after(self, after_position: int) -> int | None:
        while True:
            if self._unknown:
                self._unknown = False
                return None
            if self.through > after_position:
                return self.through
            self._changed.clear()
            await self._changed.wait()


def parse_position(payload: object) -> int | None:
    """A NOTIFY payload as the position it announces, ``None`` if it is not one."""
    try:
        return int(str(payload))
    except ValueError:
        return None
