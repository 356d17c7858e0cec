"""The bus port: what Corridor asks of NATS and JetStream, and nothing more (ADR 0092).

Two implementations keep it: ``NatsBus`` (``nats_adapter.py``) over nats-py and a real server,
and ``MemoryBus`` (``memory.py``), a deterministic twin on the event loop's clock or an injected
one, for simulations (ADR 0093, 0105).
One contract suite (``tests/contract/test_bus_contract.py``) runs against both.

What the callers use, and so what the port names:
- JetStream publish with ``Nats-Msg-Id`` deduplication inside the stream's duplicate window and
  the ``Nats-Expected-Last-Sequence`` / ``Nats-Expected-Last-Msg-Id`` fences (the relay,
  ADR 0011-0013; the dead-letter records of intake and executors);
- core publish, subscribe (with queue groups) and request/reply (the API, health reports, the
  executors' engine client);
- a durable pull consumer: fetch, ack, nak with a delay, term, in-progress, redelivery after
  ``ack_wait``, ``max_deliver`` (executors and the command stream);
- a stream's state and one stored message by sequence (the relay's start-up checks);
- a stream created if absent and never changed, and whether a durable still exists (the
  executors: the dispatch stream before the engine made it, a durable lost with its stream).

Refusals are JetStream's own, as ``PublishRefused`` with the server's error code; the twin
raises the same type with the same codes.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from services.bus.fenced_publisher import (
    ERR_WRONG_LAST_MSG_ID,
    ERR_WRONG_LAST_SEQUENCE,
    HDR_EXPECTED_LAST_MSG_ID,
    HDR_EXPECTED_LAST_SEQUENCE,
    HDR_MSG_ID,
    OutgoingMessage,
    PublishRefused,
)
from services.bus.stream_limits import StreamLimits

__all__ = [
    "ERR_WRONG_LAST_MSG_ID",
    "ERR_WRONG_LAST_SEQUENCE",
    "HDR_MSG_ID",
    "Bus",
    "BusError",
    "Delivery",
    "Durable",
    "FencedPublishing",
    "Message",
    "NoResponders",
    "NotFound",
    "OutgoingMessage",
    "PubAck",
    "PublishRefused",
    "PullConsumer",
    "StoredMessage",
    "StreamSpec",
    "StreamState",
    "Subscription",
    "fence_headers",
]

# JetStream's answer to "deliver without limit" (``max_deliver``): work orders are never given
# up on, since money may be on the wire (ADR 0201).
DELIVER_FOREVER: Final = -1


class BusError(Exception):
    """The root of the bus's own errors (JetStream refusals are ``PublishRefused``)."""


class NoResponders(BusError):
    """Nobody listens on the subject: no subscriber for a request, no stream for a publish."""


class NotFound(BusError):
    """No such stream, or no message at that sequence."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream as the port knows it: production streams carry more (limits, atomic batches),
    declared by ``services.bus.jetstream``."""

    name: str
    subjects: tuple[str, ...]
    duplicate_window_s: float
    # A work queue deletes a message once its consumer acks it (CORRIDOR_CMD, ADR 0079).
    work_queue: bool = False
    # Takes atomic batches (CORRIDOR_EVT and CORRIDOR_DISPATCH, ADR 0013).
    allow_atomic: bool = False
    # How much the stream keeps (ADR 0079), applied when it is created on a server. The twin
    # keeps everything: a simulation never fills a stream (ADR 0093).
    limits: StreamLimits | None = None


@dataclass(frozen=True, slots=True)
class Durable:
    """A durable pull consumer on ``stream``, delivering every stored message from the first
    (``DeliverPolicy.ALL``) that matches ``filter_subject``, acked explicitly."""

    stream: str
    name: str
    filter_subject: str
    ack_wait_s: float
    max_deliver: int = DELIVER_FOREVER
    max_ack_pending: int = 1000


@dataclass(frozen=True, slots=True)
class PubAck:
    stream: str
    seq: int  # for a duplicate: the sequence of the message already stored
    duplicate: bool


@dataclass(frozen=True, slots=True)
class StreamState:
    first_seq: int
    last_seq: int
    messages: int


@dataclass(frozen=True, slots=True)
class StoredMessage:
    stream: str
    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    # When the stream stored it, on the server's clock (the twin's: its injected one).
    stored_at: datetime.datetime | None = None


class Message(Protocol):
    """A core NATS message: a request to answer, a reply, or a report."""

    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def reply(self) -> str: ...
    async def respond(self, data: bytes) -> None: ...


class Delivery(Protocol):
    """One delivery of a stored message to a durable; settled by exactly one of ack, nak or
    term, or redelivered after ``ack_wait`` (reset by ``in_progress``)."""

    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def num_delivered(self) -> int: ...
    @property
    def stream_seq(self) -> int: ...
    @property
    def num_pending(self) -> int:
        """Messages matching the durable's filter not yet delivered to it."""
        ...

    async def ack(self) -> None: ...
    async def nak(self, delay_s: float | None = None) -> None: ...
    async def term(self) -> None: ...
    async def in_progress(self) -> None: ...


class PullConsumer(Protocol):
    async def fetch(self, batch: int, *, timeout_s: float) -> list[Delivery]:
        """Up to ``batch`` deliveries, redeliveries first; raises ``TimeoutError`` if none
        came within ``timeout_s``."""
        ...

    async def close(self) -> None: ...


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


Handler = Callable[[Message], Awaitable[None]]


class FencedPublishing(Protocol):
    """The relay's publishes (ADR 0011-0013): every message is on the wire, in order, when
    the call returns; the future gives the stream sequence of the last one, or fails with
    ``PublishRefused`` (JetStream's code, or ``ERR_DUPLICATE`` for a duplicate under a fence)
    or ``TimeoutError``. ``FencedPublisher`` is the NATS implementation."""

    async def publish_each(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        """One publish per message; fenced (``expected_last_seq``), each further message
        expects the previous one's ``Nats-Msg-Id`` as the stream's last (a chain)."""
        ...

    async def publish_atomic(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        """All or nothing, one acknowledgement (``ERR_ATOMIC_DISABLED`` where the stream
        takes no batches, ``ERR_DUPLICATE_IN_BATCH`` if any message id is stored)."""
        ...


class Bus(FencedPublishing, Protocol):
    async def add_stream(self, spec: StreamSpec) -> None:
        """Create the stream if it does not exist; an existing one is kept as it is, never
        changed (one created a moment ago by somebody else too)."""
        ...

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        expected_last_seq: int | None = None,
        expected_last_msg_id: str | None = None,
        timeout_s: float,
    ) -> PubAck:
        """Store in the stream that takes ``subject``. A ``Nats-Msg-Id`` header already stored
        within the duplicate window is not stored again (``PubAck.duplicate``); a fence that
        does not hold raises ``PublishRefused`` (``ERR_WRONG_LAST_SEQUENCE`` or
        ``ERR_WRONG_LAST_MSG_ID``); no stream raises ``NoResponders``."""
        ...

    async def send(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Core publish: at most once, to whoever subscribes now."""
        ...

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float,
    ) -> Message:
        """The first reply; ``NoResponders`` at once if nobody subscribes, ``TimeoutError``
        if nobody answers within ``timeout_s``."""
        ...

    @property
    def max_payload(self) -> int:
        """The largest message the bus carries, in bytes (the server's ``max_payload``): a
        reply larger than this is never delivered, so the API answers a coded error instead."""
        ...

    async def subscribe(
        self,
        subject: str,
        handler: Handler,
        *,
        queue: str = "",
        pending_msgs_max: int | None = None,
        pending_bytes_max: int | None = None,
    ) -> Subscription:
        """``handler`` gets each message on ``subject`` (wildcards ``*`` and ``>``), one at a
        time in order; within a ``queue`` group each message goes to one member only.
        ``pending_msgs_max`` / ``pending_bytes_max``: messages (payload bytes) held for a
        handler that has fallen behind; a message that would reach either limit is dropped
        (a slow consumer). Default: the client's own limits."""
        ...

    async def consumer(self, durable: Durable) -> PullConsumer:
        """Create the durable if missing (an existing one keeps its settings) and bind to it."""
        ...

    async def has_durable(self, stream: str, name: str) -> bool:
        """Whether the durable ``name`` exists on ``stream``: false once it or its stream is
        deleted (a stream re-created since has no durables). Other failures raise."""
        ...

    async def stream_state(self, stream: str) -> StreamState:
        """Raises ``NotFound`` for a stream that does not exist."""
        ...

    async def get_message(
        self, stream: str, seq: int, *, next_on: str | None = None
    ) -> StoredMessage:
        """The message at ``seq``; with ``next_on`` (a subject, wildcards allowed) the first at
        or after ``seq`` on a subject it matches. Raises ``NotFound`` if there is none."""
        ...

    async def delete_message(self, stream: str, seq: int) -> None:
        """Remove one stored message (the dead-letter desk's drop and replay, ADR 0080).
        Raises ``NotFound`` for a stream or sequence that holds nothing."""
        ...


def fence_headers(
    headers: Mapping[str, str] | None,
    *,
    expected_last_seq: int | None,
    expected_last_msg_id: str | None,
) -> dict[str, str]:
    """``headers`` with the fences as JetStream reads them."""
    merged = dict(headers or {})
    if expected_last_seq is not None:
        merged[HDR_EXPECTED_LAST_SEQUENCE] = str(expected_last_seq)
    if expected_last_msg_id is not None:
        merged[HDR_EXPECTED_LAST_MSG_ID] = expected_last_msg_id
    return merged
