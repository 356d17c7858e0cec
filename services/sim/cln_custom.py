"""The simulated lightningd's custom messages: ``sendcustommsg`` out, the ``custommsg`` hook in.

``sendcustommsg`` follows lightningd/connect_control.c (doc/schemas/sendcustommsg.json): ``msg``
is hex including the 2-byte big-endian type and not the length; types lightningd handles
itself are refused (-32600), an unknown peer is "No such peer", an offline one "Peer is not
connected" (both -32600); the answer says the message was queued. Even types are sent since
v23.11 (the peer may hang up; ours ignores them).

Incoming: lightningd gives a custom message only to plugins (odd types it does not handle,
to the ``custommsg`` hook). The node server's plugin host (cln_plugins.py) is called for each
message that reaches this node while it has a plugin with that hook; with none, the message
is dropped as lightningd drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog

from services.lightning.port import CUSTOM_MESSAGE_DATA_BYTES_MAX
from services.sim.cln_params import required
from services.sim.cln_plugins import PluginHost
from services.sim.custom_messages import PeerNotConnected
from services.sim.errors import NodeOffline, UnknownNode
from services.sim.jsonrpc import JSONRPC_INVALID_PARAMS, JSONRPC_INVALID_REQUEST, RpcFailure
from services.sim.network import SimNetwork

log = structlog.get_logger(__name__)

PARAMETERS: Final = {"sendcustommsg": ("node_id", "msg")}
SENT_STATUS: Final = "Message sent to connectd for delivery"
# BOLT 1, 2, 7 message types lightningd handles itself (wire/peer_wire.csv).
INTERNAL_TYPES: Final = frozenset(
    {16, 17, 18, 19, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 64, 65, 66, 67, 68, 69, 70,
     71, 72, 73, 74, 78, 128, 130, 131, 132, 133, 134, 135, 136, 137, 256, 257, 258, 259, 261,
     262, 263, 264, 265, 513}
)  # fmt: skip
HEX_CHARS_MAX: Final = 2 * (2 + CUSTOM_MESSAGE_DATA_BYTES_MAX)


class ClnCustomMessages:
    def __init__(self, network: SimNetwork, node: str, host: PluginHost) -> None:
        self._network = network
        self._node = node
        self._host = host
        self._pump: asyncio.Task[None] | None = None

    def methods(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        return {"sendcustommsg": self._sendcustommsg}

    def start(self) -> None:
        """Deliver incoming messages to the plugins, if any registered ``custommsg``."""
        if self._host.has_hook("custommsg") and self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._deliver())

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None

    async def _sendcustommsg(self, params: dict[str, Any]) -> dict[str, Any]:
        node_id = required(params, "node_id")
        msg = required(params, "msg")
        if not isinstance(msg, str) or len(msg) > HEX_CHARS_MAX:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "msg: should be a hex string")
        try:
            raw = bytes.fromhex(msg)
        except ValueError:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "msg: should be a hex string") from None
        if len(raw) < 2:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "msg: should be at least 2 bytes")
        message_type = int.from_bytes(raw[:2], "big")
        if message_type in INTERNAL_TYPES:
            raise RpcFailure(
                JSONRPC_INVALID_REQUEST,
                f"Cannot send messages of type {message_type}. It is not possible to send "
                "messages that have a type managed internally since that might cause issues "
                "with the internal state tracking.",
            )
        if not isinstance(node_id, str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "node_id: should be a node id")
        try:
            self._network.node_by_pubkey(node_id)
        except UnknownNode:
            raise RpcFailure(JSONRPC_INVALID_REQUEST, f"No such peer: {node_id}") from None
        try:
            self._network.custom_messages.send(self._node, node_id, message_type, raw[2:])
        except (PeerNotConnected, NodeOffline):
            raise RpcFailure(JSONRPC_INVALID_REQUEST, f"Peer is not connected: {node_id}") from None
        return {"status": SENT_STATUS}

    async def _deliver(self) -> None:
        async with self._network.custom_messages.watch(self._node) as queue:
            while True:
                message = await queue.get()
                if message.message_type % 2 == 0:
                    continue  # an unknown even type: lightningd hangs up, no hook sees it
                await self._host.call_hook(
                    "custommsg",
                    {
                        "peer_id": message.sender_pubkey,
                        "payload": message.message_type.to_bytes(2, "big").hex()
                        + message.data.hex(),
                    },
                    message_type=message.message_type,
                )
