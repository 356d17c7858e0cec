"""Hear the executors' channel snapshots into a ``LiquidityBook`` (ADR 0240)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from typing import Any

from nats.aio.client import Client

from projections.liquidity import LiquidityBook
from services.bus import subjects
from services.domain.liquidity.forecast import Outflow
from services.domain.liquidity.targets import Targets


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def gather(
    nc: Client, book: LiquidityBook, *, expected: Collection[tuple[str, str]], wait_s: float
) -> None:
    """Fill ``book`` from ``corridor.liquidity.v1.>`` until every ``expected`` node has been
    heard or ``wait_s`` has passed (a silent node then shows as absent, not as empty)."""
    heard = asyncio.Event()

    async def on_snapshot(msg: Any) -> None:
        book.receive(msg.subject, msg.data, received_at_ms=now_ms())
        if expected and set(expected) <= book.nodes():
            heard.set()

    sub = await nc.subscribe(subjects.LIQUIDITY_WILDCARD, cb=on_snapshot)
    try:
        try:
            async with asyncio.timeout(wait_s):
                await heard.wait()
        except TimeoutError:
            pass  # what was heard by now is the answer; the missing nodes are listed
    finally:
        await sub.unsubscribe()


class LiquidityFeed:
    """The gateway's book of channel snapshots, heard for as long as it runs (the console's
    liquidity tables); judged against the targets in settings."""

    def __init__(self, *, targets: Targets | None = None, interval_ms: int = 5_000) -> None:
        self.book = LiquidityBook(interval_ms=interval_ms)
        self.targets = targets if targets is not None else Targets()
        self.outflow_window_ms = 3_600_000

    @classmethod
    def from_settings(cls) -> LiquidityFeed:
        from services.liquidity.config import targets_from
        from services.settings import Settings

        settings = Settings()
        feed = cls(
            targets=targets_from(settings), interval_ms=int(settings.health_interval_s * 1000)
        )
        feed.outflow_window_ms = settings.liquidity_outflow_window_s * 1000
        return feed

    async def start(self, nc: Client) -> None:
        await nc.subscribe(subjects.LIQUIDITY_WILDCARD, cb=self._on_snapshot)

    async def _on_snapshot(self, msg: Any) -> None:
        self.book.receive(msg.subject, msg.data, received_at_ms=now_ms())

    def view(self, at_ms: int, outflows: Mapping[str, Outflow] | None = None) -> dict[str, Any]:
        return self.book.view(at_ms, self.targets, outflows)
