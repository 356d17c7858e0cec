"""Custom peer messages (BOLT 1 types >= 32768) between simulated nodes.

A node sends to a peer it is connected to; in the simulator every online node is connected to
every other online node (as ``ClnNodeServer._connected`` and channel opens assume). Each
reader of a node (an lnd ``SubscribeCustomMessages`` stream, the CLN plugin host, an
in-process adapter, the simulated LSP) gets its own bounded queue. Messages that reach a node
nobody reads are dropped, as lnd drops them without a subscriber and lightningd without a
``custommsg`` plugin. Delivery is in send order per reader.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import msgspec
import structlog

from services.lightning.port import (
    CUSTOM_MESSAGE_DATA_BYTES_MAX,
    CUSTOM_MESSAGE_TYPE_MAX,
)
from services.sim.errors import NodeOffline, SimError
from services.sim.state import NetworkState

log = structlog.get_logger(__name__)

# Messages waiting for one reader: LSPS0 sends one request at a time per peer, so a reader
# that is a thousand behind has stopped reading; newer messages are dropped, not buffered.
READER_QUEUE_MAX: Final = 1024


class SimCustomMessage(msgspec.Struct, frozen=True, kw_only=True):
    sender: str  # node name
    sender_pubkey: str
    message_type: int
    data: bytes


class PeerNotConnected(SimError):
    """The peer is unknown to the sender or offline: no connection to send over."""

    def __init__(self, peer_pubkey: str) -> None:
        super().__init__(f"peer {peer_pubkey} is not connected")
        self.peer_pubkey = peer_pubkey


class CustomMessageHub:
    def __init__(self, state: NetworkState) -> None:
        self._state = state
        self._readers: dict[str, set[asyncio.Queue[SimCustomMessage]]] = {}
        self.dropped = 0

    def send(self, origin: str, peer_pubkey: str, message_type: int, data: bytes) -> None:
        """Queue ``data`` for ``peer_pubkey``'s readers. Raises ``NodeOffline`` (origin),
        ``PeerNotConnected`` or ``ValueError`` for a type or size out of range."""
        sender = self._state.node(origin)
        if not self._state.is_online(origin):
            raise NodeOffline(origin)
        if not 0 <= message_type <= CUSTOM_MESSAGE_TYPE_MAX:
            raise ValueError(f"message type {message_type} out of range")
        if len(data) > CUSTOM_MESSAGE_DATA_BYTES_MAX:
            raise ValueError(f"message of {len(data)} bytes is too large")
        try:
            peer = self._state.node_by_pubkey(peer_pubkey)
        except KeyError:
            raise PeerNotConnected(peer_pubkey) from None
        if peer.name == origin or not self._state.is_online(peer.name):
            raise PeerNotConnected(peer_pubkey)
        message = SimCustomMessage(
            sender=origin, sender_pubkey=sender.pubkey, message_type=message_type, data=data
        )
        for queue in self._readers.get(peer.name, ()):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("sim_custom_message_dropped", node=peer.name, sender=origin)

    @contextlib.asynccontextmanager
    async def watch(self, node: str) -> AsyncIterator[asyncio.Queue[SimCustomMessage]]:
        """A queue that receives each custom message reaching ``node`` while the context is
        open (registered before this yields, so nothing sent after it is missed)."""
        self._state.node(node)
        queue: asyncio.Queue[SimCustomMessage] = asyncio.Queue(maxsize=READER_QUEUE_MAX)
        self._readers.setdefault(node, set()).add(queue)
        try:
            yield queue
        finally:
            readers = self._readers.get(node)
            if readers is not None:
                readers.discard(queue)
                if not readers:
                    del self._readers[node]

    def readers_of(self, node: str) -> int:
        return len(self._readers.get(node, ()))
