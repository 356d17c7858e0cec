"""The LSPS0 client side: requests to an LSP over the node port, answers matched by id.

One reader task follows the node's custom messages and hands each response to the request
waiting for its id (bLIP-50: a response whose id we do not remember is ignored). Every
request has a deadline; past it the id is forgotten and ``LspsTimeout`` is raised, which a
caller treats as a temporary server failure. An LSP that sends a malformed message is not
asked again until ``reset`` (bLIP-50: not on this connection session).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any, Final

import structlog

from services.lightning.port import CustomMessage, NodeError, NodePort
from services.lsps import lsps0

log = structlog.get_logger(__name__)

# bLIP-50 asks for "a timeout on the scale of minutes"; callers pass shorter ones in tests.
REQUEST_TIMEOUT_S_DEFAULT: Final = 60.0
# Requests waiting for an answer at once: LSPS flows ask one thing at a time per LSP.
PENDING_MAX: Final = 256
# 128 random bits per id (bLIP-50: at least 80, from a secure source).
ID_BYTES: Final = 16
# How long one ``lsps0.list_protocols`` try of ``ready`` waits before the next try.
READY_TRY_S: Final = 0.5


class LspsTimeout(Exception):
    """No answer within the deadline: a temporary failure, the id is forgotten."""


class LspsUnavailable(Exception):
    """The LSP cannot be asked: it sent a malformed message this session, the peer is not
    connected, or our node is unavailable."""


class LspsClient:
    def __init__(self, node: NodePort) -> None:
        self._node = node
        self._pending: dict[tuple[str, str], asyncio.Future[lsps0.Response]] = {}
        self._bad_peers: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> LspsClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Read the node's messages (again, if the last stream broke: the node restarted)."""
        if self._reader is not None and self._reader.done():
            if not self._reader.cancelled() and self._reader.exception() is not None:
                log.info("lsps0_stream_ended", reason=str(self._reader.exception()))
            self._reader = None
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read(), name="lsps0-reader")

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, NodeError):
                await self._reader
            self._reader = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    def reset(self, peer_pubkey: str) -> None:
        """A new connection session with the LSP: ask it again after a bad message."""
        self._bad_peers.discard(peer_pubkey)

    async def ready(self, peer_pubkey: str, *, timeout_s: float) -> list[int]:
        """``lsps0.list_protocols`` until it answers, within ``timeout_s``: a node's message
        stream has no acknowledgement, so the first round trip is what shows it is live."""
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(LspsTimeout):
                    result = await self.call(
                        peer_pubkey, "lsps0.list_protocols", {}, timeout_s=READY_TRY_S
                    )
                    protocols = result.get("protocols")
                    if not isinstance(protocols, list) or not all(
                        isinstance(p, int) for p in protocols
                    ):
                        raise LspsUnavailable("lsps0.list_protocols answered without protocols")
                    return protocols

    async def call(
        self,
        peer_pubkey: str,
        method: str,
        params: dict[str, Any],
        *,
        timeout_s: float = REQUEST_TIMEOUT_S_DEFAULT,
    ) -> dict[str, Any]:
        """The LSP's ``result``; raises ``LspsError`` (its error), ``LspsTimeout`` or
        ``LspsUnavailable``."""
        if self._closed:
            raise LspsUnavailable("the LSPS client is closed")
        if peer_pubkey in self._bad_peers:
            raise LspsUnavailable(f"LSP {peer_pubkey} sent a malformed message this session")
        if len(self._pending) >= PENDING_MAX:
            raise LspsUnavailable("too many LSPS requests waiting")
        self.start()
        request = lsps0.Request(id=secrets.token_hex(ID_BYTES), method=method, params=params)
        key = (peer_pubkey, request.id)
        future: asyncio.Future[lsps0.Response] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            try:
                await self._node.send_custom_message(
                    peer_pubkey=peer_pubkey,
                    message_type=lsps0.LSPS0_MESSAGE_TYPE,
                    data=lsps0.encode_request(request),
                )
            except NodeError as exc:
                raise LspsUnavailable(str(exc)) from None
            try:
                async with asyncio.timeout(timeout_s):
                    response = await future
            except TimeoutError:
                raise LspsTimeout(f"{method}: no answer within {timeout_s} s") from None
        finally:
            self._pending.pop(key, None)
        if response.error is not None:
            raise response.error
        assert response.result is not None
        return response.result

    async def _read(self) -> None:
        async for message in self._node.custom_messages():
            self._take(message)

    def _take(self, message: CustomMessage) -> None:
        if message.message_type != lsps0.LSPS0_MESSAGE_TYPE:
            return
        try:
            reply = lsps0.parse_reply(message.data)
        except lsps0.BadMessage as exc:
            log.warning("lsps0_bad_message", peer=message.peer_pubkey, reason=str(exc))
            self._bad_peers.add(message.peer_pubkey)
            return
        if isinstance(reply, lsps0.Notification):
            log.info("lsps0_notification_ignored", peer=message.peer_pubkey, method=reply.method)
            return
        if reply.id is None:
            log.warning(
                "lsps0_error_without_id",
                peer=message.peer_pubkey,
                code=reply.error.code if reply.error else None,
            )
            return
        future = self._pending.get((message.peer_pubkey, reply.id))
        if future is None or future.done():
            return  # an id we do not remember (bLIP-50: ignore it)
        future.set_result(reply)
