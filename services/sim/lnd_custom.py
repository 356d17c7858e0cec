"""The simulated lnd's custom peer messages: ``SendCustomMessage`` and
``SubscribeCustomMessages`` (lnrpc/lightning.proto), as lnd's rpcserver.go answers them.

- ``peer`` must be 33 bytes: otherwise route.NewVertexFromBytes' plain error (``UNKNOWN``).
- A peer that is not connected is ``NOT_FOUND`` "peer is not connected" (ErrPeerNotConnected).
- A type below the custom range (32768) is lnwire.NewCustom's plain error (``UNKNOWN``), as
  is a message longer than lnwire's 65533-byte body.
- The answer is ``status`` "message sent successfully".
- A subscription sees the messages that arrive while it is open, in order, each with the
  sender's pubkey, type and data; it breaks when the node stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import grpc

from services.lightning.lnd_proto import lightning_pb2 as ln
from services.lightning.port import CUSTOM_MESSAGE_DATA_BYTES_MAX, CUSTOM_MESSAGE_TYPE_MIN
from services.sim.custom_messages import PeerNotConnected
from services.sim.errors import NodeOffline
from services.sim.lnd_gate import NodeGate

if TYPE_CHECKING:
    _Context = grpc.aio.ServicerContext[Any, Any]

PUBKEY_BYTES: Final = 33
SENT_STATUS: Final = "message sent successfully"
NOT_CONNECTED_TEXT: Final = "peer is not connected"


class CustomMessageServicerMixin:
    _network: Any
    _gate: NodeGate
    _node: str

    async def SendCustomMessage(self, request: Any, context: _Context) -> Any:
        if len(request.peer) != PUBKEY_BYTES:
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                f"invalid vertex length of {len(request.peer)}, want {PUBKEY_BYTES}",
            )
        if request.type < CUSTOM_MESSAGE_TYPE_MIN:
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                f"msg type: {request.type} needs to be >= {CUSTOM_MESSAGE_TYPE_MIN}",
            )
        if len(request.data) > CUSTOM_MESSAGE_DATA_BYTES_MAX:
            await context.abort(grpc.StatusCode.UNKNOWN, "custom message too large")
        try:
            self._network.custom_messages.send(
                self._node, request.peer.hex(), request.type, bytes(request.data)
            )
        except PeerNotConnected:
            await context.abort(grpc.StatusCode.NOT_FOUND, NOT_CONNECTED_TEXT)
        except NodeOffline:
            await self._gate.abort_offline(context)
        return ln.SendCustomMessageResponse(status=SENT_STATUS)

    async def SubscribeCustomMessages(self, request: Any, context: _Context) -> AsyncIterator[Any]:
        async with self._network.custom_messages.watch(self._node) as queue:
            with self._gate.offline_signal() as offline:
                while True:
                    got = asyncio.ensure_future(queue.get())
                    went_offline = asyncio.ensure_future(offline.wait())
                    try:
                        await asyncio.wait({got, went_offline}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for task in (got, went_offline):
                            task.cancel()
                        await asyncio.wait({got, went_offline})
                    if not got.done() or got.cancelled():
                        await self._gate.abort_offline(context)
                        return
                    message = got.result()
                    yield ln.CustomMessage(
                        peer=bytes.fromhex(message.sender_pubkey),
                        type=message.message_type,
                        data=message.data,
                    )
