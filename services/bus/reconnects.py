"""A connection's reconnects, counted and awaitable.

nats-py replays subscriptions after a reconnect, but a request or publish whose answer was on
its way when the server went away never gets one: whoever waits for such answers learns from
this that they are lost, instead of waiting for a timeout (ADR 0097).
"""

from __future__ import annotations

import asyncio


class Reconnects:
    def __init__(self) -> None:
        self.count = 0
        self._next = asyncio.Event()

    async def reconnected(self) -> None:
        """nats-py's ``reconnected_cb``."""
        self.count += 1
        event, self._next = self._next, asyncio.Event()
        event.set()

    async def after(self, count: int) -> None:
        """Return once the connection has reconnected more than ``count`` times."""
        while self.count <= count:
            await self._next.wait()
