"""Hear the executors' channel snapshots into a ``LiquidityBook`` (ADR 0240)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

from nats.aio.client import Client

from projections.liquidity import LiquidityBook
from services.bus import subjects


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
