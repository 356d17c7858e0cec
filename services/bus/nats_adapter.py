"""``NatsBus``: the bus port over nats-py and a real nats-server (ADR 0092).

A thin wrapper: every call is the nats-py call the services make today, and nats-py's errors
become the port's (``NoResponders``, ``NotFound``, ``TimeoutError``, and ``PublishRefused``
with JetStream's error code, as ``fenced_publisher`` raises it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import (
    DEFAULT_SUB_PENDING_BYTES_LIMIT,
    DEFAULT_SUB_PENDING_MSGS_LIMIT,
)
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError
from nats.js.errors import NotFoundError as JsNotFound

from services.bus.fenced_publisher import FencedPublisher
from services.bus.port import (
    BusError,
    Delivery,
    Durable,
    Handler,
    Message,
    NoResponders,
    NotFound,
    OutgoingMessage,
    PubAck,
    PublishRefused,
    PullConsumer,
    StoredMessage,
    StreamSpec,
    StreamState,
    Subscription,
    fence_headers,
)

log = structlog.get_logger("corridor.bus")

# JetStream's JSSequenceNotFoundErrF: a delete of a sequence the stream does not hold
# (https://github.com/nats-io/nats-server/blob/main/server/errors.json).
ERR_SEQUENCE_NOT_FOUND = 10043


@dataclass(frozen=True, slots=True)
class _Received:
    """What every message read from nats-py carries, core or JetStream."""

    msg: Msg

    @property
    def subject(self) -> str:
        return self.msg.subject

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def headers(self) -> Mapping[str, str]:
        return self.msg.headers or {}


@dataclass(frozen=True, slots=True)
class _CoreMessage(_Received):
    @property
    def reply(self) -> str:
        return self.msg.reply

    async def respond(self, data: bytes) -> None:
        await self.msg.respond(data)


@dataclass(frozen=True, slots=True)
class _Delivery(_Received):
    @property
    def num_delivered(self) -> int:
        return self.msg.metadata.num_delivered or 1

    @property
    def stream_seq(self) -> int:
        sequence = self.msg.metadata.sequence
        return sequence.stream if sequence is not None else 0

    @property
    def num_pending(self) -> int:
        return self.msg.metadata.num_pending or 0

    async def ack(self) -> None:
        await self.msg.ack()

    async def nak(self, delay_s: float | None = None) -> None:
        await self.msg.nak(delay=delay_s)

    async def term(self) -> None:
        await self.msg.term()

    async def in_progress(self) -> None:
        await self.msg.in_progress()


class _PullConsumer:
    def __init__(self, sub: JetStreamContext.PullSubscription) -> None:
        self._sub = sub

    async def fetch(self, batch: int, *, timeout_s: float) -> list[Delivery]:
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout_s)
        except nats.errors.TimeoutError as exc:
            raise TimeoutError(str(exc)) from None
        except nats.errors.Error as exc:
            # Reconnecting, a server hiccup, the durable deleted: the caller looks again.
            raise BusError(f"{type(exc).__name__}: {exc}") from exc
        return [_Delivery(msg) for msg in msgs]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


@dataclass(frozen=True, slots=True)
class _Subscription:
    sub: NatsSubscription

    async def unsubscribe(self) -> None:
        await self.sub.unsubscribe()


class NatsBus:
    """The port over one connection ``nc`` (and its JetStream context ``js``, default a new
    one: the relay passes its own, sized for its publishes in flight)."""

    def __init__(self, nc: Client, js: JetStreamContext | None = None) -> None:
        self.nc = nc
        self.js = js or nc.jetstream()
        self.fenced = FencedPublisher(nc)

    async def close(self) -> None:
        """Stop listening for fenced publishes' acknowledgements (the connection stays)."""
        await self.fenced.close()

    async def publish_each(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        return await self.fenced.publish_each(
            stream, messages, expected_last_seq=expected_last_seq, timeout_s=timeout_s
        )

    async def publish_atomic(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        return await self.fenced.publish_atomic(
            stream, messages, expected_last_seq=expected_last_seq, timeout_s=timeout_s
        )

    async def add_stream(self, spec: StreamSpec) -> None:
        retention = RetentionPolicy.WORK_QUEUE if spec.work_queue else RetentionPolicy.LIMITS
        config = StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            storage=StorageType.FILE,
            duplicate_window=spec.duplicate_window_s,
            retention=retention,
            allow_atomic=spec.allow_atomic,
        )
        if spec.limits is not None:
            # With the limits' record in the metadata, so the engine keeps them from then on
            # and never overwrites one an operator changed (``stream_limits.py``).
            config = spec.limits.applied_to(config)
        try:
            await self.js.stream_info(spec.name)
        except JsNotFound:
            # BadRequest: somebody created it a moment ago, which is just as good.
            with contextlib.suppress(BadRequestError):
                await self.js.add_stream(config)

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
        fenced = fence_headers(
            headers, expected_last_seq=expected_last_seq, expected_last_msg_id=expected_last_msg_id
        )
        try:
            ack = await self.js.publish(subject, data, timeout=timeout_s, headers=fenced or None)
        except (NoStreamResponseError, nats.errors.NoRespondersError):
            raise NoResponders(f"no stream takes {subject}") from None
        except nats.errors.TimeoutError as exc:
            raise TimeoutError(str(exc)) from None
        except APIError as exc:
            raise PublishRefused(
                exc.stream or "", exc.err_code or 0, exc.description or ""
            ) from None
        return PubAck(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate))

    async def send(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        await self.nc.publish(subject, data, headers=dict(headers) if headers else None)

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float,
    ) -> Message:
        try:
            msg = await self.nc.request(
                subject, data, timeout=timeout_s, headers=dict(headers) if headers else None
            )
        except nats.errors.NoRespondersError:
            raise NoResponders(f"nobody answers {subject}") from None
        except nats.errors.TimeoutError as exc:
            raise TimeoutError(str(exc)) from None
        return _CoreMessage(msg)

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload

    async def subscribe(
        self,
        subject: str,
        handler: Handler,
        *,
        queue: str = "",
        pending_msgs_max: int | None = None,
        pending_bytes_max: int | None = None,
    ) -> Subscription:
        async def deliver(msg: Msg) -> None:
            await handler(_CoreMessage(msg))

        sub = await self.nc.subscribe(
            subject,
            queue=queue,
            cb=deliver,
            pending_msgs_limit=(
                DEFAULT_SUB_PENDING_MSGS_LIMIT if pending_msgs_max is None else pending_msgs_max
            ),
            pending_bytes_limit=(
                DEFAULT_SUB_PENDING_BYTES_LIMIT if pending_bytes_max is None else pending_bytes_max
            ),
        )
        # A round trip: the subscription is live on the server when this returns.
        await self.nc.flush()
        return _Subscription(sub)

    async def consumer(self, durable: Durable) -> PullConsumer:
        config = ConsumerConfig(
            name=durable.name,
            durable_name=durable.name,
            filter_subject=durable.filter_subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=durable.ack_wait_s,
            max_deliver=durable.max_deliver,
            max_ack_pending=durable.max_ack_pending,
        )
        try:
            await self.js.add_consumer(durable.stream, config=config)
        except JsNotFound:
            raise NotFound(f"no stream {durable.stream}") from None
        except BadRequestError as exc:
            # An existing durable with settings the server will not change in place: kept.
            log.warning("bus_consumer_kept", consumer=durable.name, detail=str(exc)[:200])
        sub = await self.js.pull_subscribe_bind(durable=durable.name, stream=durable.stream)
        return _PullConsumer(sub)

    async def has_durable(self, stream: str, name: str) -> bool:
        try:
            await self.js.consumer_info(stream, name)
        except JsNotFound:  # the durable, or its stream (JetStream answers 404 for both)
            return False
        return True

    async def stream_state(self, stream: str) -> StreamState:
        try:
            state = (await self.js.stream_info(stream)).state
        except JsNotFound:
            raise NotFound(f"no stream {stream}") from None
        return StreamState(
            first_seq=state.first_seq, last_seq=state.last_seq, messages=state.messages
        )

    async def get_message(
        self, stream: str, seq: int, *, next_on: str | None = None
    ) -> StoredMessage:
        try:
            if next_on is None:
                msg = await self.js.get_msg(stream, seq=seq)
            else:
                msg = await self.js.get_msg(stream, seq=seq, subject=next_on, next=True)
        except JsNotFound:
            raise NotFound(f"{stream} holds nothing at {seq}") from None
        return StoredMessage(
            stream=stream,
            seq=msg.seq or seq,
            subject=msg.subject or "",
            data=msg.data or b"",
            headers=dict(msg.headers or {}),
            stored_at=msg.time,
        )

    async def delete_message(self, stream: str, seq: int) -> None:
        try:
            await self.js.delete_msg(stream, seq)
        except JsNotFound:
            raise NotFound(f"no stream {stream}") from None
        except BadRequestError as exc:
            if exc.err_code != ERR_SEQUENCE_NOT_FOUND:
                raise
            raise NotFound(f"{stream} holds nothing at {seq}") from None
