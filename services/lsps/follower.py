"""Runs every open LSP order of one of our nodes to its end (``corridor lsp run``, ADR 0251).

It reads the log from a cursor for ``LspOrderRequested`` events of its node, remembers the
orders that are not terminal, and steps each of them every ``poll_s``; a terminal order is
forgotten. Several followers (or a follower and ``corridor lsp order``) may step the same
order: the log takes one record per version, and the payment is one intent per order key.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from schemas import lsp_messages as lm
from services.eventstore.port import EventStore
from services.lsps.orders import LspOrders

log = structlog.get_logger(__name__)

# Log events read per round; the follower catches up over several rounds.
READ_BATCH_MAX: Final = 1000
# Open orders one follower steps; more are left for the next rounds (and logged).
OPEN_ORDERS_MAX: Final = 1024


class LspOrderFollower:
    def __init__(self, orders: LspOrders, store: EventStore, *, node: str) -> None:
        self._orders = orders
        self._store = store
        self._node = node  # the orders for this node only: its LSPS1 goes through it
        self._cursor = 0
        self.open: set[str] = set()

    async def round(self) -> None:
        """Read new orders of the node, then step each open one once."""
        batch = await self._store.read_all(after_position=self._cursor, limit=READ_BATCH_MAX)
        for event in batch:
            self._cursor = event.position
            if event.type != "LspOrderRequested" or not lm.is_lsp_order_stream(event.stream_id):
                continue
            if event.payload.get("node") != self._node:
                continue
            if len(self.open) >= OPEN_ORDERS_MAX:
                log.warning("lsp_follower_full", lsp_order_id=event.stream_id)
                continue
            self.open.add(event.stream_id)
        for order_id in sorted(self.open):
            state = await self._orders.step(order_id)
            if state.terminal:
                self.open.discard(order_id)
                log.info("lsp_order_ended", lsp_order_id=order_id, status=str(state.status))

    async def run(self, *, poll_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.round()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await stop.wait()
