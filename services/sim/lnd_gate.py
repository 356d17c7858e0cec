"""A simulated node's faults as its RPC clients meet them: offline refuses, slow answers late."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

if TYPE_CHECKING:
    _Context = grpc.aio.ServicerContext[Any, Any]

# What a client of a stopped lnd sees: the connection is refused, or an open stream is reset.
OFFLINE_TEXT = "connection refused: node offline"
WENT_OFFLINE_TEXT = "connection reset: node went offline"


class NodeGate:
    """Per-node fault checks shared by every RPC handler of one simulated node."""

    def __init__(self, network: Any, node_name: str) -> None:
        self._network = network
        self.node_name = node_name
        self._offline_events: set[asyncio.Event] = set()
        network.add_node_listener(self._on_node_change)

    def close(self) -> None:
        self._network.remove_node_listener(self._on_node_change)

    def is_online(self) -> bool:
        return bool(self._network.is_online(self.node_name))

    async def enter(self, context: _Context) -> None:
        """Run before every handler: refuse when offline, then add the node's latency."""
        if not self.is_online():
            await context.abort(grpc.StatusCode.UNAVAILABLE, OFFLINE_TEXT)
        latency_s = self._network.faults.latency_for(self.node_name)
        if latency_s > 0:
            await asyncio.sleep(latency_s)

    async def abort_offline(self, context: _Context) -> None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, WENT_OFFLINE_TEXT)

    @contextlib.contextmanager
    def offline_signal(self) -> Iterator[asyncio.Event]:
        """An event that is set once the node goes offline (at once if it already is)."""
        event = asyncio.Event()
        if not self.is_online():
            event.set()
        self._offline_events.add(event)
        try:
            yield event
        finally:
            self._offline_events.discard(event)

    def _on_node_change(self, name: str, online: bool) -> None:
        if name == self.node_name and not online:
            for event in self._offline_events:
                event.set()


_T = TypeVar("_T")


async def next_or_offline(updates: AsyncIterator[_T], offline: asyncio.Event) -> _T | None:
    """The next item of ``updates``, or ``None`` once ``offline`` is set (a stream of a real
    node breaks when it stops). An item that arrived with the outage still counts."""
    if offline.is_set():
        return None
    next_update = asyncio.ensure_future(anext(updates))
    went_offline = asyncio.ensure_future(offline.wait())
    try:
        await asyncio.wait({next_update, went_offline}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (next_update, went_offline):
            task.cancel()
        # Let a cancelled read leave the iterator before anyone closes it.
        await asyncio.wait({next_update, went_offline})
    if next_update.done() and not next_update.cancelled():
        return next_update.result()
    return None
