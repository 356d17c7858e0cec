"""JetStream publishes that land only where the publisher expects, singly or as atomic batches.

The first message of every publish call carries ``Nats-Expected-Last-Sequence``: it is stored
only if nobody else wrote to the stream since the publisher's previous call. Within a call of
single publishes each further message expects the previous one's ``Nats-Msg-Id`` as the
stream's last (``Nats-Expected-Last-Msg-Id``), a chain: once one message is refused, every
later one is refused too, so pipelined publishes stay in order. (Expected sequences alone
would not do: a foreign message can fill exactly the slot a refused one left.)

Atomic batches (nats-server 2.12+, ADR-50) store up to ``ATOMIC_BATCH_MSGS_MAX`` messages all
or nothing, with one acknowledgement. nats-py 2.x has no API for them, so this speaks the
header protocol: every message names the batch and its place in it, and the last one asks
for the commit and carries the reply subject. A batch has a fixed cost in the server of about
a millisecond of CPU (measured: ADR 0013), so small groups go out as single publishes.

Acknowledgements come back on one inbox subscription, matched by token. (nats-py's own
``publish_async`` never resolves its future when JetStream answers with an error.)
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
HDR_EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
HDR_MSG_ID = "Nats-Msg-Id"

# JetStream's error codes for the refusals a publisher must tell apart.
ERR_ATOMIC_DISABLED = 10174  # the stream lacks allow_atomic
ERR_WRONG_LAST_SEQUENCE = 10071  # somebody else wrote to the stream in between
ERR_WRONG_LAST_MSG_ID = 10070  # the same, seen through the chain of message ids
ERR_DUPLICATE_IN_BATCH = 10201  # a message id is already stored: the whole batch is refused
# Ours, not JetStream's: a single message was dropped as a duplicate, so the stream did not
# move where the publisher expected it to.
ERR_DUPLICATE = -1


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    subject: str
    body: bytes
    headers: dict[str, str]


def chain_frames(
    messages: Sequence[OutgoingMessage], *, expected_last_seq: int | None
) -> list[tuple[OutgoingMessage, dict[str, str], bool]]:
    """``(message, headers, wants_ack)`` for single publishes (``publish_each``): fenced, the
    first expects the stream's last sequence, each further one the previous message's id, and
    only the last asks for an acknowledgement."""
    if expected_last_seq is not None and any(HDR_MSG_ID not in m.headers for m in messages):
        raise ValueError("fenced single publishes need a Nats-Msg-Id on every message")
    fenced = expected_last_seq is not None
    frames = []
    previous_id = ""
    for number, message in enumerate(messages, start=1):
        headers = message.headers
        if fenced:
            if previous_id:
                headers = {**headers, HDR_EXPECTED_LAST_MSG_ID: previous_id}
            else:
                headers = {**headers, HDR_EXPECTED_LAST_SEQUENCE: str(expected_last_seq)}
            previous_id = message.headers[HDR_MSG_ID]
        frames.append((message, headers, not fenced or number == len(messages)))
    return frames


class PublishRefused(Exception):
    """JetStream did not store (all of) what was sent."""

    def __init__(self, stream: str, err_code: int, description: str) -> None:
        super().__init__(f"{stream}: {description} (err_code {err_code})")
        self.stream = stream
        self.err_code = err_code
        self.description = description


class _Error(msgspec.Struct):
    err_code: int = 0
    description: str = ""


class _Ack(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _Error | None = None


_decode_ack = msgspec.json.Decoder(_Ack)


class _Waiter:
    """The acknowledgements one publish call still waits for."""

    __slots__ = ("duplicates_fine", "future", "last_seq", "remaining", "stream")

    def __init__(
        self, stream: str, remaining: int, future: asyncio.Future[int], duplicates_fine: bool
    ) -> None:
        self.stream = stream
        self.remaining = remaining
        self.future = future
        self.duplicates_fine = duplicates_fine
        self.last_seq = 0


class FencedPublisher:
    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._nuid = NUID()
        self._inbox = nc.new_inbox()
        self._waiting: dict[str, _Waiter] = {}
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        if self._subscription is None:
            self._subscription = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        for waiter in self._waiting.values():
            waiter.future.cancel()
        self._waiting.clear()

    async def publish_atomic(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        """Send one atomic batch; the future gives the stream sequence of its last message.

        Every message is on the wire (in order, behind earlier publishes) when this returns;
        only the acknowledgement is awaited through the future, which fails with
        ``PublishRefused`` or ``TimeoutError``.
        """
        if not 0 < len(messages) <= ATOMIC_BATCH_MSGS_MAX:
            raise ValueError(f"an atomic batch holds 1 to {ATOMIC_BATCH_MSGS_MAX} messages")
        token = self._nuid.next().decode()
        frames = []
        for number, message in enumerate(messages, start=1):
            headers = {**message.headers, HDR_BATCH_ID: token, HDR_BATCH_SEQUENCE: str(number)}
            if number == 1 and expected_last_seq is not None:
                headers[HDR_EXPECTED_LAST_SEQUENCE] = str(expected_last_seq)
            if number == len(messages):
                headers[HDR_BATCH_COMMIT] = "1"
            frames.append((message, headers, number == len(messages)))
        return await self._send(stream, token, frames, acks=1, duplicates_fine=False,
                                timeout_s=timeout_s)  # fmt: skip

    async def publish_each(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        """Send each message as its own publish, pipelined; the future gives the sequence of
        the last one once all are acknowledged.

        With ``expected_last_seq`` every message needs a ``Nats-Msg-Id`` (the chain), and only
        the last message asks for an acknowledgement: it can only be stored if the one before
        it was the stream's last, and so on back to the first, which found the stream at
        ``expected_last_seq``. A refused message is then silent, but the chain makes the last
        one refused too. A duplicate counts as a refusal: the stream did not move where the
        publisher thinks."""
        if not messages:
            raise ValueError("nothing to publish")
        fenced = expected_last_seq is not None
        frames = chain_frames(messages, expected_last_seq=expected_last_seq)
        # Without expected sequences a duplicate is just JetStream's deduplication at work.
        return await self._send(
            stream, self._nuid.next().decode(), frames, acks=1 if fenced else len(messages),
            duplicates_fine=not fenced, timeout_s=timeout_s,
        )  # fmt: skip

    async def _send(
        self,
        stream: str,
        token: str,
        frames: list[tuple[OutgoingMessage, dict[str, str], bool]],
        *,
        acks: int,
        duplicates_fine: bool,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        """Publish ``(message, headers, wants_ack)`` frames in order; the acknowledgements
        come back on this publisher's inbox under ``token``."""
        await self.start()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(stream, acks, future, duplicates_fine)
        self._waiting[token] = waiter
        reply = f"{self._inbox}.{token}"
        try:
            for message, headers, wants_ack in frames:
                to = reply if wants_ack else ""
                await self._nc.publish(message.subject, message.body, reply=to, headers=headers)
        except BaseException:
            self._waiting.pop(token, None)
            raise
        return asyncio.ensure_future(self._acknowledged(token, waiter, timeout_s))

    async def _acknowledged(self, token: str, waiter: _Waiter, timeout_s: float) -> int:
        try:
            return await asyncio.wait_for(waiter.future, timeout_s)
        finally:
            self._waiting.pop(token, None)

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        waiter = self._waiting.get(token)
        if waiter is None or waiter.future.done():
            return  # a late answer to a publish given up on
        stream = waiter.stream
        refusal = None
        try:
            ack = _decode_ack.decode(msg.data)
        except msgspec.DecodeError:
            refusal = PublishRefused(stream, 0, "no stream answered" if not msg.data
                                     else "unreadable acknowledgement")  # fmt: skip
        else:
            if ack.error is not None:
                refusal = PublishRefused(stream, ack.error.err_code, ack.error.description)
            elif ack.stream != stream:
                refusal = PublishRefused(stream, 0, f"stored by stream {ack.stream!r}")
            elif ack.duplicate and not waiter.duplicates_fine:
                refusal = PublishRefused(stream, ERR_DUPLICATE, "message id already stored")
            else:
                waiter.last_seq = max(waiter.last_seq, ack.seq)
        if refusal is not None:
            self._waiting.pop(token, None)
            waiter.future.set_exception(refusal)
            return
        waiter.remaining -= 1
        if waiter.remaining == 0:
            self._waiting.pop(token, None)
            waiter.future.set_result(waiter.last_seq)
