"""The LSPS0 server side: one dispatcher from request bytes to response bytes.

Methods are registered with the parameter names they know; a request with another name gets
-32602 with ``data.unrecognized`` (bLIP-50), an unknown method -32601, a malformed payload
-32700 with id null. ``lsps0.list_protocols`` answers the registered LSPS numbers (0 never
appears). Handlers raise ``LspsError`` for their own errors; anything else is -32603 and
logged, never the handler's text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from services.lightning.port import NodeError, NodePort
from services.lsps import lsps0

log = structlog.get_logger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]  # (peer, params) -> result


@dataclass(frozen=True)
class Method:
    handler: Handler
    params: frozenset[str]


class LspsDispatcher:
    def __init__(self, methods: Mapping[str, Method]) -> None:
        assert all("." in name for name in methods), methods
        self._methods = dict(methods)
        # Vendor methods (another prefix) are served but are no LSPS to advertise.
        prefixes = {name.split(".", 1)[0] for name in methods}
        numbers = {int(p[4:]) for p in prefixes if p.startswith("lsps") and p[4:].isdigit()}
        self._protocols = sorted(numbers - {0})

    async def handle(self, peer_pubkey: str, data: bytes) -> bytes:
        try:
            request = lsps0.parse_request(data)
        except lsps0.BadMessage as exc:
            log.warning("lsps0_bad_request", peer=peer_pubkey, reason=str(exc))
            return lsps0.encode_error(None, lsps0.LspsError(lsps0.PARSE_ERROR, "Parse error"))
        try:
            result = await self._dispatch(peer_pubkey, request)
        except lsps0.LspsError as error:
            return lsps0.encode_error(request.id, error)
        except Exception:
            log.exception("lsps0_handler_failed", peer=peer_pubkey, method=request.method)
            return lsps0.encode_error(
                request.id, lsps0.LspsError(lsps0.INTERNAL_ERROR, "Internal error")
            )
        return lsps0.encode_result(request.id, result)

    async def _dispatch(self, peer_pubkey: str, request: lsps0.Request) -> dict[str, Any]:
        if request.method == "lsps0.list_protocols":
            if request.params:
                raise lsps0.invalid_params(unrecognized=sorted(request.params))
            return {"protocols": self._protocols}
        method = self._methods.get(request.method)
        if method is None:
            raise lsps0.LspsError(lsps0.METHOD_NOT_FOUND, "Method not found")
        unknown = sorted(set(request.params) - method.params)
        if unknown:
            raise lsps0.invalid_params(unrecognized=unknown)
        return await method.handler(peer_pubkey, request.params)


async def serve(node: NodePort, dispatcher: LspsDispatcher) -> None:
    """Answer every LSPS0 request reaching ``node`` until cancelled (or the node's stream
    breaks: ``NodeError``). Requests are answered one at a time, in arrival order."""
    async for message in node.custom_messages():
        if message.message_type != lsps0.LSPS0_MESSAGE_TYPE:
            continue
        reply = await dispatcher.handle(message.peer_pubkey, message.data)
        with contextlib.suppress(NodeError):  # the client went away: bLIP-50 lets it be
            await node.send_custom_message(
                peer_pubkey=message.peer_pubkey,
                message_type=lsps0.LSPS0_MESSAGE_TYPE,
                data=reply,
            )
