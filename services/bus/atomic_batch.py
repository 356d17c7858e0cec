"""JetStream atomic batch publishing (nats-server 2.12+, ADR-50), which nats-py 2.x lacks.

A batch of up to ``ATOMIC_BATCH_MSGS_MAX`` messages to one stream is stored all together or
not at all, with one acknowledgement and, under ``sync_interval: always``, one fsync for the
whole batch instead of one per message. The wire protocol is headers on ordinary publishes:
every message names the batch and its place in it, and the last one asks for the commit and
carries the reply subject. ``Nats-Expected-Last-Sequence`` on the first message makes the
batch conditional on nobody else having written to the stream since.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.nuid import NUID

# The server's default ``jetstream.limits.batch.max_msgs``.
ATOMIC_BATCH_MSGS_MAX = 1000

HDR_BATCH_ID = "Nats-Batch-Id"
HDR_BATCH_SEQUENCE = "Nats-Batch-Sequence"
HDR_BATCH_COMMIT = "Nats-Batch-Commit"
HDR_EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"

# JetStream's error codes for the refusals a publisher must tell apart.
ERR_ATOMIC_DISABLED = 10174  # the stream lacks allow_atomic
ERR_WRONG_LAST_SEQUENCE = 10071  # somebody else wrote to the stream in between
ERR_DUPLICATE_IN_BATCH = 10201  # a message id is already stored: the whole batch is refused


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    subject: str
    body: bytes
    headers: dict[str, str]


class BatchRefused(Exception):
    """JetStream stored nothing of the batch."""

    def __init__(self, stream: str, err_code: int, description: str) -> None:
        super().__init__(f"{stream}: {description} (err_code {err_code})")
        self.err_code = err_code


class _Error(msgspec.Struct):
    err_code: int = 0
    description: str = ""


class _Ack(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    count: int = 0
    error: _Error | None = None


_decode_ack = msgspec.json.Decoder(_Ack)


class AtomicPublisher:
    """Publishes atomic batches on one connection; acknowledgements come back on one inbox."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._nuid = NUID()
        self._inbox = nc.new_inbox()
        self._waiting: dict[str, tuple[str, asyncio.Future[int]]] = {}
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        if self._subscription is None:
            self._subscription = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        for _, future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def publish(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        """Send one atomic batch; the future gives the stream sequence of its last message.

        Every message is on the wire (in order, behind earlier batches) when this returns;
        only the acknowledgement is awaited through the future, which fails with
        ``BatchRefused`` or ``TimeoutError``.
        """
        if not 0 < len(messages) <= ATOMIC_BATCH_MSGS_MAX:
            raise ValueError(f"an atomic batch holds 1 to {ATOMIC_BATCH_MSGS_MAX} messages")
        await self.start()
        batch_id = self._nuid.next().decode()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[batch_id] = (stream, future)
        last = len(messages)
        try:
            for number, message in enumerate(messages, start=1):
                headers = {**message.headers, HDR_BATCH_ID: batch_id,
                           HDR_BATCH_SEQUENCE: str(number)}  # fmt: skip
                reply = ""
                if number == 1 and expected_last_seq is not None:
                    headers[HDR_EXPECTED_LAST_SEQUENCE] = str(expected_last_seq)
                if number == last:
                    headers[HDR_BATCH_COMMIT] = "1"
                    reply = f"{self._inbox}.{batch_id}"
                await self._nc.publish(message.subject, message.body, reply=reply, headers=headers)
        except BaseException:
            self._waiting.pop(batch_id, None)
            raise
        return asyncio.ensure_future(self._acknowledged(batch_id, future, timeout_s))

    async def _acknowledged(
        self, batch_id: str, future: asyncio.Future[int], timeout_s: float
    ) -> int:
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._waiting.pop(batch_id, None)

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if waiting is None or waiting[1].done():
            return  # a late answer to a batch given up on
        stream, future = waiting
        try:
            ack = _decode_ack.decode(msg.data)
        except msgspec.DecodeError as exc:
            future.set_exception(BatchRefused(stream, 0, f"unreadable acknowledgement: {exc}"))
            return
        if ack.error is not None:
            future.set_exception(BatchRefused(stream, ack.error.err_code, ack.error.description))
        elif ack.stream != stream:
            future.set_exception(BatchRefused(stream, 0, f"stored by stream {ack.stream!r}"))
        else:
            future.set_result(ack.seq)
