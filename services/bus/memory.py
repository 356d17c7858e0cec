"""``MemoryBus``: the bus port in memory, deterministic, on an injected clock (ADR 0093).

It keeps what the contract suite checks JetStream for: per-stream sequences, deduplication on
``Nats-Msg-Id`` inside the duplicate window, the expected-last-sequence and expected-last-msg-id
fences, checked in nats-server's order (the contract suite pins it): the expected last
sequence, then the duplicate window, then the expected last message id, subject
wildcards, durable pull consumers with filters, ack / nak with delay / term / in-progress,
redelivery after ``ack_wait`` and ``max_deliver``, request/reply with "no responders".

Nothing in it reads the wall clock. Time is the event loop's by default
(``loop.time()``): a fetch or request waiting on the bus also waits for its deadline and for
the next redelivery to come due on a loop timer, so the loop drives it, a virtual-time loop
as well as a real one (ADR 0105). With a clock of its own (``now_s``), whoever moves that
clock calls ``tick()`` so that waiting fetches and requests look again (a deadline reached
gives ``TimeoutError``, a redelivery that came due is handed out); no timer is armed then.
Everything else happens in the order the caller's tasks run, so a seeded scheduler replays it
exactly.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import datetime
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from services.bus.fenced_publisher import (
    ATOMIC_BATCH_MSGS_MAX,
    ERR_ATOMIC_DISABLED,
    ERR_DUPLICATE,
    ERR_DUPLICATE_IN_BATCH,
    HDR_EXPECTED_LAST_MSG_ID,
    HDR_EXPECTED_LAST_SEQUENCE,
    chain_frames,
)
from services.bus.port import (
    DELIVER_FOREVER,
    ERR_WRONG_LAST_MSG_ID,
    ERR_WRONG_LAST_SEQUENCE,
    HDR_MSG_ID,
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

log = structlog.get_logger("corridor.bus.memory")

INBOX_PREFIX = "_INBOX.memory"
# Messages a subscription holds before its handler takes them; beyond this the twin drops
# them as nats-py does for a slow consumer (its default pending_msgs_limit).
SUBSCRIPTION_PENDING_MSGS_MAX = 512 * 1024
SUBSCRIPTION_PENDING_BYTES_MAX = 128 * 1024 * 1024  # nats-py's pending_bytes_limit default
# nats-server's default ``max_payload`` (1 MiB), which the twin reports so that callers size
# their replies as against the server (it does not refuse larger messages itself).
MAX_PAYLOAD_BYTES = 1024 * 1024


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` one or more trailing tokens."""
    wanted = pattern.split(".")
    tokens = subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(wanted) == len(tokens)


@dataclass(frozen=True, slots=True)
class _CoreMessage:
    bus: MemoryBus
    subject: str
    data: bytes
    headers: Mapping[str, str]
    reply: str

    async def respond(self, data: bytes) -> None:
        if not self.reply:
            raise ValueError("this message asks for no reply")
        await self.bus.send(self.reply, data)


@dataclass(slots=True)
class _Pending:
    """A delivered, unsettled message: handed out again once ``due_s`` has come."""

    delivered: int
    due_s: float


@dataclass(slots=True)
class _Stream:
    spec: StreamSpec
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    seqs: list[int] = field(default_factory=list)  # the stored sequences, ascending
    last_seq: int = 0
    last_msg_id: str = ""
    # Message id -> (its sequence, when it was stored), oldest first.
    ids: collections.OrderedDict[str, tuple[int, float]] = field(
        default_factory=collections.OrderedDict
    )
    consumers: dict[str, _Consumer] = field(default_factory=dict)

    def state(self) -> StreamState:
        first = self.seqs[0] if self.seqs else (self.last_seq + 1 if self.last_seq else 0)
        return StreamState(first_seq=first, last_seq=self.last_seq, messages=len(self.seqs))

    def forget_old_ids(self, now_s: float) -> None:
        window_s = self.spec.duplicate_window_s
        while self.ids:
            msg_id, (_, stored_s) = next(iter(self.ids.items()))
            if now_s - stored_s < window_s:
                break
            del self.ids[msg_id]

    def remove(self, seq: int) -> None:
        if self.messages.pop(seq, None) is not None:
            del self.seqs[bisect.bisect_left(self.seqs, seq)]


class _Consumer:
    def __init__(self, bus: MemoryBus, stream: _Stream, durable: Durable) -> None:
        self._bus = bus
        self._stream = stream
        self.durable = durable
        self._cursor = 0  # the last stream sequence considered for a first delivery
        self._pending: dict[int, _Pending] = {}

    def take(self, batch: int) -> list[Delivery]:
        """Redeliveries that came due (lowest sequence first), then new messages."""
        now_s = self._bus.now_s()
        durable = self.durable
        out: list[Delivery] = []
        for seq in sorted(self._pending):
            if len(out) == batch:
                return out
            pending = self._pending[seq]
            if pending.due_s > now_s:
                continue
            message = self._stream.messages.get(seq)
            exhausted = durable.max_deliver != DELIVER_FOREVER and (
                pending.delivered >= durable.max_deliver
            )
            if message is None or exhausted:
                del self._pending[seq]  # gone from the stream, or delivered max_deliver times
                continue
            pending.delivered += 1
            pending.due_s = now_s + durable.ack_wait_s
            out.append(self._delivery(message, pending.delivered))
        while len(out) < batch and len(self._pending) < durable.max_ack_pending:
            message = self._next_new()
            if message is None:
                break
            self._pending[message.seq] = _Pending(1, now_s + durable.ack_wait_s)
            out.append(self._delivery(message, 1))
        return out

    def next_due_s(self) -> float | None:
        """When the earliest delivery not yet settled comes due again, if any."""
        return min((p.due_s for p in self._pending.values()), default=None)

    def bound(self) -> bool:
        """Whether this durable still exists (not deleted with its stream)."""
        stream = self._stream
        return (
            self._bus.stream_named(stream.spec.name) is stream
            and stream.consumers.get(self.durable.name) is self
        )

    def _next_new(self) -> StoredMessage | None:
        seqs = self._stream.seqs
        for index in range(bisect.bisect_right(seqs, self._cursor), len(seqs)):
            seq = seqs[index]
            self._cursor = seq
            message = self._stream.messages[seq]
            if subject_matches(self.durable.filter_subject, message.subject):
                return message
        return None

    def _unseen(self) -> int:
        seqs = self._stream.seqs
        return sum(
            1
            for seq in seqs[bisect.bisect_right(seqs, self._cursor) :]
            if subject_matches(self.durable.filter_subject, self._stream.messages[seq].subject)
        )

    def _delivery(self, message: StoredMessage, delivered: int) -> Delivery:
        return _Delivery(self, message, delivered, self._unseen())

    def settle(self, seq: int, *, due_in_s: float | None) -> None:
        """``due_in_s`` None: settled for good (ack or term); else hand out again then."""
        if due_in_s is None:
            # Room under max_ack_pending: a fetch waiting for it looks again.
            if self._pending.pop(seq, None) is not None:
                self._bus.wake()
            return
        pending = self._pending.get(seq)
        if pending is not None:
            pending.due_s = self._bus.now_s() + due_in_s
            self._bus.wake()

    def acked(self, seq: int) -> None:
        self.settle(seq, due_in_s=None)
        if self._stream.spec.work_queue:
            self._stream.remove(seq)


@dataclass(frozen=True, slots=True)
class _Delivery:
    consumer: _Consumer
    message: StoredMessage
    num_delivered: int
    num_pending: int

    @property
    def subject(self) -> str:
        return self.message.subject

    @property
    def data(self) -> bytes:
        return self.message.data

    @property
    def headers(self) -> Mapping[str, str]:
        return self.message.headers

    @property
    def stream_seq(self) -> int:
        return self.message.seq

    async def ack(self) -> None:
        self.consumer.acked(self.message.seq)

    async def nak(self, delay_s: float | None = None) -> None:
        self.consumer.settle(self.message.seq, due_in_s=delay_s or 0.0)

    async def term(self) -> None:
        self.consumer.settle(self.message.seq, due_in_s=None)

    async def in_progress(self) -> None:
        self.consumer.settle(self.message.seq, due_in_s=self.consumer.durable.ack_wait_s)


class _PullConsumer:
    def __init__(self, bus: MemoryBus, consumer: _Consumer) -> None:
        self._bus = bus
        self._consumer = consumer

    async def fetch(self, batch: int, *, timeout_s: float) -> list[Delivery]:
        if batch < 1:
            raise ValueError("fetch at least one message")
        deadline_s = self._bus.now_s() + timeout_s
        while True:
            if not self._consumer.bound():
                # As the server answers a pull on a deleted durable: the caller binds again.
                raise BusError(f"consumer {self._consumer.durable.name} deleted")
            out = self._consumer.take(batch)
            if out:
                return out
            if self._bus.now_s() >= deadline_s:
                raise TimeoutError("no messages")
            due_s = self._consumer.next_due_s()
            await self._bus.changed(until_s=deadline_s if due_s is None else min(deadline_s, due_s))

    async def close(self) -> None:
        return None


class _Subscription:
    def __init__(
        self,
        bus: MemoryBus,
        pattern: str,
        handler: Handler,
        queue: str,
        *,
        pending_msgs_max: int,
        pending_bytes_max: int,
    ) -> None:
        self.bus = bus
        self.pending_msgs_max = pending_msgs_max
        self.pending_bytes_max = pending_bytes_max
        self._pending_bytes = 0
        self.pattern = pattern
        self.queue = queue
        self._handler = handler
        self._inbox: collections.deque[Message] = collections.deque()
        self._worker: asyncio.Task[None] | None = None
        self.active = True
        self.dropped = 0

    def deliver(self, message: Message) -> None:
        # nats-py's rule: a message that would bring the held bytes to the limit is dropped.
        too_many_bytes = self._pending_bytes + len(message.data) >= self.pending_bytes_max
        if len(self._inbox) >= self.pending_msgs_max or too_many_bytes:
            self.dropped += 1
            log.warning("memory_bus_slow_consumer", subject=self.pattern, dropped=self.dropped)
            return
        self._inbox.append(message)
        self._pending_bytes += len(message.data)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        # One message at a time, in order, as nats-py runs a subscription's callback.
        while self._inbox and self.active:
            message = self._inbox.popleft()
            self._pending_bytes -= len(message.data)
            try:
                await self._handler(message)
            except Exception as exc:
                log.warning("memory_bus_handler_failed", subject=message.subject,
                            error=type(exc).__name__)  # fmt: skip

    async def unsubscribe(self) -> None:
        self.active = False
        self._inbox.clear()
        self._pending_bytes = 0
        self.bus.drop(self)


class MemoryBus:
    """The bus port in one process. ``now_s``: the injected clock, in seconds."""

    def __init__(self, now_s: Callable[[], float] | None = None) -> None:
        """``now_s`` None: the running event loop's clock, with timers for the waits."""
        self.now_s = now_s or _loop_time
        self._timed = now_s is None
        self._streams: dict[str, _Stream] = {}
        self._subscriptions: list[_Subscription] = []
        self._queue_turns: dict[tuple[str, str], int] = collections.defaultdict(int)
        self._replies: dict[str, asyncio.Future[Message]] = {}
        self._inbox_ids = itertools.count(1)
        self._changed = asyncio.Event()

    def tick(self) -> None:
        """The clock moved: waiting fetches and requests look again."""
        self.wake()

    def wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, *, until_s: float | None = None) -> None:
        """Until the bus changes or, on the loop's clock, ``until_s`` comes."""
        changed = self._changed
        if until_s is None or not self._timed:
            await changed.wait()
            return
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # arrives as the event is set, and a killed worker would then fetch on for ever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, until_s - self.now_s())):
                await changed.wait()

    def stream_named(self, name: str) -> _Stream | None:
        return self._streams.get(name)

    def drop(self, subscription: _Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def add_stream(self, spec: StreamSpec) -> None:
        if spec.name in self._streams:
            return
        for stream in self._streams.values():
            for mine, theirs in itertools.product(spec.subjects, stream.spec.subjects):
                if subject_matches(mine, theirs) or subject_matches(theirs, mine):
                    raise ValueError(f"{spec.name}: subjects overlap with {stream.spec.name}")
        self._streams[spec.name] = _Stream(spec)

    def _stream_for(self, subject: str) -> _Stream | None:
        for stream in self._streams.values():
            if any(subject_matches(pattern, subject) for pattern in stream.spec.subjects):
                return stream
        return None

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
        stream = self._stream_for(subject)
        if stream is None:
            raise NoResponders(f"no stream takes {subject}")
        fenced = fence_headers(
            headers, expected_last_seq=expected_last_seq, expected_last_msg_id=expected_last_msg_id
        )
        name = stream.spec.name
        now_s = self.now_s()
        stream.forget_old_ids(now_s)
        raw_seq = fenced.get(HDR_EXPECTED_LAST_SEQUENCE)
        if raw_seq is not None and int(raw_seq) != stream.last_seq:
            raise PublishRefused(name, ERR_WRONG_LAST_SEQUENCE,
                                 f"wrong last sequence: {stream.last_seq}")  # fmt: skip
        msg_id = fenced.get(HDR_MSG_ID, "")
        if msg_id and msg_id in stream.ids:
            return PubAck(stream=name, seq=stream.ids[msg_id][0], duplicate=True)
        last_id = fenced.get(HDR_EXPECTED_LAST_MSG_ID)
        if last_id is not None and last_id != stream.last_msg_id:
            raise PublishRefused(name, ERR_WRONG_LAST_MSG_ID,
                                 f"wrong last msg ID: {stream.last_msg_id}")  # fmt: skip
        stream.last_seq += 1
        seq = stream.last_seq
        # JetStream keeps the fence headers with the message; so does the twin.
        stored_at = datetime.datetime.fromtimestamp(now_s, tz=datetime.UTC)
        stream.messages[seq] = StoredMessage(name, seq, subject, data, fenced, stored_at)
        stream.seqs.append(seq)
        stream.last_msg_id = msg_id
        if msg_id:
            stream.ids[msg_id] = (seq, now_s)
        self.wake()
        return PubAck(stream=name, seq=seq, duplicate=False)

    async def publish_each(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        if not messages:
            raise ValueError("nothing to publish")
        fenced = expected_last_seq is not None
        last_seq = 0
        refusal: PublishRefused | None = None
        for message, headers, wants_ack in chain_frames(
            messages, expected_last_seq=expected_last_seq
        ):
            # A message that asks for no acknowledgement is stored or dropped in silence.
            outcome = await self._store_one(stream, message.subject, message.body, headers)
            if not wants_ack or refusal is not None:
                continue
            if isinstance(outcome, PublishRefused):
                refusal = outcome
            elif outcome.stream != stream:
                refusal = PublishRefused(stream, 0, f"stored by stream {outcome.stream!r}")
            elif outcome.duplicate and fenced:
                refusal = PublishRefused(stream, ERR_DUPLICATE, "message id already stored")
            else:
                last_seq = max(last_seq, outcome.seq)
        return self._settled(refusal, last_seq)

    async def publish_atomic(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        if not 0 < len(messages) <= ATOMIC_BATCH_MSGS_MAX:
            raise ValueError(f"an atomic batch holds 1 to {ATOMIC_BATCH_MSGS_MAX} messages")
        target = self._stream_for(messages[0].subject)
        if target is None:
            return self._settled(PublishRefused(stream, 0, "no stream answered"), 0)
        refusal = self._batch_refusal(target, messages, expected_last_seq)
        if refusal is not None:
            return self._settled(PublishRefused(stream, refusal[0], refusal[1]), 0)
        last_seq = 0
        for message in messages:
            ack = await self.publish(
                message.subject, message.body, headers=message.headers, timeout_s=timeout_s
            )
            last_seq = ack.seq
        if target.spec.name != stream:
            return self._settled(PublishRefused(stream, 0, f"stored by {target.spec.name!r}"), 0)
        return self._settled(None, last_seq)

    def _batch_refusal(
        self, target: _Stream, messages: Sequence[OutgoingMessage], expected_last_seq: int | None
    ) -> tuple[int, str] | None:
        """Why JetStream would refuse this batch whole, or None."""
        if not target.spec.allow_atomic:
            return ERR_ATOMIC_DISABLED, "atomic publish is disabled"
        if expected_last_seq is not None and expected_last_seq != target.last_seq:
            return ERR_WRONG_LAST_SEQUENCE, f"wrong last sequence: {target.last_seq}"
        if any(self._stream_for(m.subject) is not target for m in messages):
            return 0, "an atomic batch goes to one stream"
        target.forget_old_ids(self.now_s())
        ids = [m.headers[HDR_MSG_ID] for m in messages if HDR_MSG_ID in m.headers]
        if len(set(ids)) != len(ids) or any(msg_id in target.ids for msg_id in ids):
            return ERR_DUPLICATE_IN_BATCH, "duplicate message id is in process"
        return None

    async def _store_one(
        self, stream: str, subject: str, data: bytes, headers: Mapping[str, str]
    ) -> PubAck | PublishRefused:
        try:
            return await self.publish(subject, data, headers=headers, timeout_s=0.0)
        except PublishRefused as exc:
            return PublishRefused(stream, exc.err_code, exc.description)
        except NoResponders:
            return PublishRefused(stream, 0, "no stream answered")

    @staticmethod
    def _settled(refusal: PublishRefused | None, last_seq: int) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if refusal is not None:
            future.set_exception(refusal)
        else:
            future.set_result(last_seq)
        return future

    async def send(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        if self._stream_for(subject) is not None:
            # JetStream stores a core publish on its subjects too, and tells nobody if it
            # refuses one: nothing asked for an acknowledgement.
            with contextlib.suppress(PublishRefused):
                await self.publish(subject, data, headers=headers, timeout_s=0.0)
        self._route(_CoreMessage(self, subject, data, dict(headers or {}), ""))

    def _route(self, message: _CoreMessage) -> None:
        waiting = self._replies.pop(message.subject, None)
        if waiting is not None:
            if not waiting.done():
                waiting.set_result(message)
                self.wake()
            return
        groups: dict[str, list[_Subscription]] = collections.defaultdict(list)
        for subscription in self._subscriptions:
            if subject_matches(subscription.pattern, message.subject):
                groups[subscription.queue].append(subscription)
        for queue, members in groups.items():
            if not queue:
                for member in members:
                    member.deliver(message)
                continue
            # One member of a queue group, in turn: deterministic, unlike the server's pick.
            turn = self._queue_turns[(message.subject, queue)]
            self._queue_turns[(message.subject, queue)] = turn + 1
            members[turn % len(members)].deliver(message)

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float,
    ) -> Message:
        if self._stream_for(subject) is not None:
            # The stream answers: a request on its subject is a publish, its reply the ack.
            answer = await self._ack_json(subject, data, headers)
            return _CoreMessage(self, f"{INBOX_PREFIX}.{next(self._inbox_ids)}", answer, {}, "")
        if not any(subject_matches(s.pattern, subject) for s in self._subscriptions):
            raise NoResponders(f"nobody answers {subject}")
        inbox = f"{INBOX_PREFIX}.{next(self._inbox_ids)}"
        reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[inbox] = reply
        deadline_s = self.now_s() + timeout_s
        try:
            self._route(_CoreMessage(self, subject, data, dict(headers or {}), inbox))
            while not reply.done():
                if self.now_s() >= deadline_s:
                    raise TimeoutError(f"no reply on {subject}")
                await self.changed(until_s=deadline_s)
            return reply.result()
        finally:
            self._replies.pop(inbox, None)

    async def _ack_json(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None
    ) -> bytes:
        try:
            ack = await self.publish(subject, data, headers=headers, timeout_s=0.0)
        except PublishRefused as exc:
            error = {"code": 400, "err_code": exc.err_code, "description": exc.description}
            return json.dumps({"error": error}).encode()
        answer: dict[str, object] = {"stream": ack.stream, "seq": ack.seq}
        if ack.duplicate:
            answer["duplicate"] = True
        return json.dumps(answer).encode()

    @property
    def max_payload(self) -> int:
        return MAX_PAYLOAD_BYTES

    async def subscribe(
        self,
        subject: str,
        handler: Handler,
        *,
        queue: str = "",
        pending_msgs_max: int | None = None,
        pending_bytes_max: int | None = None,
    ) -> Subscription:
        subscription = _Subscription(
            self,
            subject,
            handler,
            queue,
            pending_msgs_max=(
                SUBSCRIPTION_PENDING_MSGS_MAX if pending_msgs_max is None else pending_msgs_max
            ),
            pending_bytes_max=(
                SUBSCRIPTION_PENDING_BYTES_MAX if pending_bytes_max is None else pending_bytes_max
            ),
        )
        self._subscriptions.append(subscription)
        return subscription

    async def consumer(self, durable: Durable) -> PullConsumer:
        stream = self._streams.get(durable.stream)
        if stream is None:
            raise NotFound(f"no stream {durable.stream}")
        consumer = stream.consumers.get(durable.name)
        if consumer is None:
            consumer = stream.consumers[durable.name] = _Consumer(self, stream, durable)
        return _PullConsumer(self, consumer)

    async def has_durable(self, stream: str, name: str) -> bool:
        found = self._streams.get(stream)
        return found is not None and name in found.consumers

    async def stream_state(self, stream: str) -> StreamState:
        found = self._streams.get(stream)
        if found is None:
            raise NotFound(f"no stream {stream}")
        return found.state()

    async def get_message(
        self, stream: str, seq: int, *, next_on: str | None = None
    ) -> StoredMessage:
        found = self._streams.get(stream)
        message = found.messages.get(seq) if found is not None else None
        if found is not None and next_on is not None:
            message = None
            for stored in found.seqs[bisect.bisect_left(found.seqs, seq) :]:
                if subject_matches(next_on, found.messages[stored].subject):
                    message = found.messages[stored]
                    break
        if message is None:
            raise NotFound(f"{stream} holds nothing at {seq}")
        return message

    async def delete_message(self, stream: str, seq: int) -> None:
        found = self._streams.get(stream)
        if found is None or seq not in found.messages:
            raise NotFound(f"{stream} holds nothing at {seq}")
        found.remove(seq)
        self.wake()

    def delete_stream(self, stream: str) -> None:
        """A stream loss (a fault the simulation injects): its messages and durables go."""
        self._streams.pop(stream, None)
        self.wake()
