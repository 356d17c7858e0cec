"""The outbox relay: publish the event log to JetStream in position order, exactly once per
event id (``Nats-Msg-Id``), resuming from a checkpoint kept in PostgreSQL.

JetStream is only a transport. At start the relay compares the stream's last position with its
checkpoint and rewinds if JetStream lost messages, so everything is re-published from the log.
Only one relay publishes at a time (a PostgreSQL advisory lock); others stand by.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from schemas.codec import encode
from schemas.records import EventMetadata, RecordedEvent
from services.bus import subjects
from services.bus.fenced_publisher import (
    ATOMIC_BATCH_MSGS_MAX,
    ERR_ATOMIC_DISABLED,
    ERR_WRONG_LAST_MSG_ID,
    ERR_WRONG_LAST_SEQUENCE,
    FencedPublisher,
    OutgoingMessage,
    PublishRefused,
)
from services.engine.event_codec import subject_for, to_recorded
from services.eventstore.hashing import chain_hash
from services.eventstore.port import NewEvent, StoredEvent
from services.eventstore.postgres import PostgresEventStore

log = structlog.get_logger("corridor.relay")

_LEADER_LOCK_KEY = 0x72656C61  # "rela"
CHECKPOINT = "relay:jetstream"
# Reconnect back-off after a failure: quick first retry, then at most every few seconds.
CHECKPOINT_INTERVAL_S = 0.5
RETRY_BACKOFF_S_FIRST = 0.2
RETRY_BACKOFF_S_MAX = 5.0
PUBLISH_ACK_TIMEOUT_S = 30.0
# Events this process committed, kept for the relay so it need not read them back; beyond
# this the relay is behind, and it reads the log instead.
HANDOFF_EVENTS_MAX = 10_000
# How long a NOTIFY that arrives during this process's own commit waits for its handoff
# before the relay reads the log after all. The wait ends as soon as the commit is handed
# over; the limit only matters if the writer hangs. (A fixed 50 ms lost the race whenever the
# event loop stalled that long under load, and the relay read back what it was being handed.)
HANDOFF_WAIT_S_MAX = 1.0
# Batches published but not yet acknowledged: the next batch is read and sent while the
# previous acks are on their way, instead of one JetStream round trip per batch.
BATCHES_IN_FLIGHT_MAX = 4
# Messages for one stream from which an atomic batch is cheaper than single publishes
# (measured: an atomic batch costs nats-server ~1 ms of CPU, a pipelined publish ~0.05 ms).
ATOMIC_BATCH_MSGS_MIN = 24


class OutboxRelay:
    def __init__(
        self,
        store: PostgresEventStore,
        js: JetStreamContext,
        *,
        fenced: FencedPublisher | None = None,
        dsn: str,
        batch_max: int = 1000,
        poll_s: float = 1.0,
        ensure_streams: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._js = js
        # Publishes fenced by the streams' expected sequences, in atomic batches when large
        # (ADR 0013). Without it every event is a plain JetStream publish.
        self._fenced = fenced
        self._atomic_ok = True  # False once the server refuses atomic batches
        # Positions up to here may already be in JetStream (an earlier run published them):
        # they go out one by one, as an atomic batch holding a duplicate is refused whole.
        self._maybe_published_through = 0
        # Each stream's last sequence as this relay expects it; None when unknown.
        self._expected_seq: dict[str, int] | None = None
        self._in_flight: collections.deque[tuple[int, asyncio.Future[int]]] = collections.deque()
        self._dsn = dsn
        self._batch_max = batch_max
        self._poll_s = poll_s
        # Re-declares the streams on every (re)start: a deleted stream comes back and is refilled.
        self._ensure_streams = ensure_streams
        self._wake = asyncio.Event()
        self.position = 0
        self.published = 0
        self.failures = 0
        self._saved_position = -1
        self._saved_at = 0.0
        self.leader = asyncio.Event()
        # (position, event) committed by this process, in position order.
        self._handoff: collections.deque[tuple[int, NewEvent]] = collections.deque()
        self._last_hash: bytes | None = None  # hash of the event at the sent position
        self.handed_over = 0  # events published from the handoff rather than read back
        self._sent_position = 0  # the last position handed to JetStream (acked or not)
        self._replayed_through = 0
        # The highest position a NOTIFY announced, and whether the log must be read anyway.
        self._notified_through = 0
        self._read_log = True
        # True while this process's writer is committing: a NOTIFY then most likely announces
        # that very commit, whose events are about to be handed over.
        self.local_writer_busy: Callable[[], bool] = lambda: False

    async def run(self) -> None:
        """Publish until cancelled. A failure (NATS or PostgreSQL away, a stream deleted) never
        stops the relay: it backs off, reconnects, re-checks the stream and resumes from its
        checkpoint, so nothing committed is left unpublished."""
        backoff_s = RETRY_BACKOFF_S_FIRST
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                log.warning("relay_failed", error=type(exc).__name__, detail=str(exc)[:200],
                            retry_in_s=backoff_s)  # fmt: skip
                self.leader.clear()
                await asyncio.sleep(backoff_s)  # back-off before reconnecting, not synchronisation
                backoff_s = min(backoff_s * 2, RETRY_BACKOFF_S_MAX)
            else:
                return

    async def _run_once(self) -> None:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(self._dsn)
        try:
            if self._ensure_streams is not None:
                await self._ensure_streams()
            await self._become_leader(conn)
            await conn.add_listener("corridor_events", self._on_notify)
            self.position = await self._start_position()
            self._saved_position = self.position
            self._expected_seq = None
            log.info("relay_started", position=self.position)
            # (last position of the batch, its acks), oldest first. ``self.position`` only
            # moves once a batch and every batch before it are acknowledged.
            in_flight = self._in_flight
            in_flight.clear()
            self._sent_position = self.position
            self._last_hash = await self._store.hash_at(self.position)
            self._read_log = True  # catch up from the checkpoint first
            try:
                while True:
                    if conn.is_closed():
                        # The leader lock lived on that connection: another relay may hold it
                        # now, and two publishing at once would interleave positions.
                        raise ConnectionError("the relay's leader connection was lost")
                    self._wake.clear()
                    batch = self._take_handoff()
                    if not batch:
                        batch = await self._await_own_commit()
                    if not batch and (
                        self._read_log or self._notified_through > self._sent_position
                    ):
                        # Only when something may be in the log that was not handed over:
                        # at start, after a NOTIFY from another writer, or on the idle poll.
                        batch = [
                            _Outgoing.stored(event)
                            for event in await self._store.read_all(
                                after_position=self._sent_position, limit=self._batch_max
                            )
                        ]
                        self._read_log = len(batch) == self._batch_max  # more may follow
                    if not batch:
                        while in_flight:
                            await self._acknowledged(in_flight.popleft())
                        # Idle: save now if the last save is old enough, else wake up for it.
                        due_in_s = self._saved_at + CHECKPOINT_INTERVAL_S - time.monotonic()
                        if due_in_s <= 0:
                            await self._save_checkpoint()
                        wait_s = self._poll_s
                        if self.position != self._saved_position:
                            wait_s = min(wait_s, max(due_in_s, 0.0))
                        try:
                            await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
                        except TimeoutError:
                            self._read_log = True  # in case a NOTIFY was lost
                        continue
                    in_flight.append((batch[-1].position, await self._publish(batch)))
                    self._sent_position = batch[-1].position
                    self._last_hash = batch[-1].hash
                    while in_flight and (
                        len(in_flight) > BATCHES_IN_FLIGHT_MAX or in_flight[0][1].done()
                    ):
                        await self._acknowledged(in_flight.popleft())
                    if time.monotonic() - self._saved_at >= CHECKPOINT_INTERVAL_S:
                        await self._save_checkpoint()
            finally:
                for _, acks in in_flight:
                    acks.cancel()
                in_flight.clear()
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _await_own_commit(self) -> list[_Outgoing]:
        """The handoff of the commit this process's writer has under way, if it is the next
        thing to publish; [] at once if the writer is idle or the handoff shows a gap."""
        deadline_s = time.monotonic() + HANDOFF_WAIT_S_MAX
        while not self._handoff and self.local_writer_busy():
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining_s)
            self._wake.clear()
            batch = self._take_handoff()
            if batch:
                return batch
        return []

    def offer(self, first_position: int, events: Sequence[NewEvent]) -> None:
        """Events this process has just committed, from ``first_position`` on, in order.

        The relay publishes them without reading them back when they directly follow what it
        has sent; otherwise (another engine wrote in between, or it fell behind) it reads
        the log as always, so the handoff only saves work and never decides what is sent.
        """
        if not self.leader.is_set():
            return
        if len(self._handoff) + len(events) > HANDOFF_EVENTS_MAX:
            log.warning("relay_handoff_overflow", held=len(self._handoff), sent=self._sent_position)
            self._handoff.clear()
        self._handoff.extend((first_position + i, event) for i, event in enumerate(events))
        self._wake.set()

    def _take_handoff(self) -> list[_Outgoing]:
        """The handed-over events right after the sent position, with their hash chain."""
        sent_position = self._sent_position
        handoff = self._handoff
        while handoff and handoff[0][0] <= sent_position:
            handoff.popleft()
        prev_hash = self._last_hash
        if prev_hash is None or not handoff or handoff[0][0] != sent_position + 1:
            return []
        batch: list[_Outgoing] = []
        while handoff and len(batch) < self._batch_max:
            position, event = handoff[0]
            if position != sent_position + len(batch) + 1:
                break
            handoff.popleft()
            # The same chain append_events computes in the database (hashing.py).
            event_hash = chain_hash(prev_hash, position, event.body)
            batch.append(_Outgoing.handed_over(position, event, prev_hash, event_hash))
            prev_hash = event_hash
        self.handed_over += len(batch)
        return batch

    async def _acknowledged(self, entry: tuple[int, asyncio.Future[int]]) -> None:
        last_position, acks = entry
        self.published += await acks
        self.position = last_position

    async def _save_checkpoint(self) -> None:
        # Saved at most every CHECKPOINT_INTERVAL_S (busy or idle), not after every batch: a
        # checkpoint is a durable commit, and saving it whenever the relay caught up cost one
        # fsync'd transaction per relay cycle, about two per intent under a moderate load.
        # A crash only re-publishes what JetStream then drops as duplicates (Nats-Msg-Id) or
        # consumers dedupe by position.
        if self.position != self._saved_position:
            await self._store.set_checkpoint(CHECKPOINT, self.position)
            self._saved_position = self.position
        self._saved_at = time.monotonic()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        # The payload is the commit's last position: a commit already handed over and sent
        # needs no read of the log, and one that is being handed over needs none either.
        try:
            position = int(str(payload))
        except ValueError:
            self._read_log = True
        else:
            if position <= self._sent_position:
                return
            self._notified_through = max(self._notified_through, position)
        self._wake.set()

    async def _become_leader(self, conn: asyncpg.Connection[Any]) -> None:
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK_KEY):
            await asyncio.sleep(self._poll_s)  # standby: poll for the leader's lock
        # Everything committed so far may have been published by an earlier leader (or an
        # earlier run of this one): work orders up to here go out marked as replays.
        self._replayed_through = await self._store.head_position()
        self.leader.set()

    async def _start_position(self) -> int:
        checkpoint = await self._store.get_checkpoint(CHECKPOINT)
        in_stream = await self._last_position_in_stream(subjects.EVT_STREAM)
        # A work order's batch may have landed while its events' batch did not.
        self._maybe_published_through = max(
            in_stream, await self._last_position_in_stream(subjects.DISPATCH_STREAM)
        )
        if in_stream < checkpoint:
            log.warning("relay_rewind", checkpoint=checkpoint, stream_position=in_stream)
            await self._store.set_checkpoint(CHECKPOINT, in_stream)
            return in_stream
        return checkpoint

    async def _last_position_in_stream(self, stream: str) -> int:
        info = await self._js.stream_info(stream)
        if info.state.messages == 0 or not info.state.last_seq:
            return 0
        try:
            msg = await self._js.get_msg(stream, seq=info.state.last_seq)
        except NotFoundError:
            return 0
        return int((msg.headers or {}).get(subjects.HDR_POSITION, 0))

    async def _publish(self, batch: list[_Outgoing]) -> asyncio.Future[int]:
        """Send the batch; returns a future of the number of events JetStream stored as new,
        which fails if JetStream refuses or does not acknowledge the batch in time."""
        fenced = self._fenced
        if fenced is None or batch[0].position <= self._maybe_published_through:
            self._expected_seq = None  # duplicates do not move a stream's sequence
            return await self._publish_each(batch)
        if self._expected_seq is None:
            # Every earlier publish must have landed before the streams' sequences are read.
            while self._in_flight:
                await self._acknowledged(self._in_flight.popleft())
            self._expected_seq = {
                stream: (await self._js.stream_info(stream)).state.last_seq
                for stream in (subjects.EVT_STREAM, subjects.DISPATCH_STREAM)
            }
        acks: list[asyncio.Future[int]] = []
        for stream, messages in self._messages_by_stream(batch).items():
            for first in range(0, len(messages), ATOMIC_BATCH_MSGS_MAX):
                chunk = messages[first : first + ATOMIC_BATCH_MSGS_MAX]
                # The fence: a message lands only if nobody wrote to the stream since this
                # relay's last one, so a deposed leader that has not noticed yet is refused.
                # An atomic batch costs the server about 1 ms of CPU whatever its size, a
                # single publish about 0.05 ms: below ATOMIC_BATCH_MSGS_MIN singles are cheaper.
                send = fenced.publish_each
                if self._atomic_ok and len(chunk) >= ATOMIC_BATCH_MSGS_MIN:
                    send = fenced.publish_atomic
                acks.append(
                    await send(stream, chunk, expected_last_seq=self._expected_seq[stream],
                               timeout_s=PUBLISH_ACK_TIMEOUT_S)
                )  # fmt: skip
                self._expected_seq[stream] += len(chunk)
        return asyncio.ensure_future(self._count_fenced(acks, len(batch)))

    async def _count_fenced(self, acks: list[asyncio.Future[int]], events: int) -> int:
        try:
            await asyncio.gather(*acks)
        except PublishRefused as exc:
            if exc.err_code == ERR_ATOMIC_DISABLED:
                log.warning("relay_atomic_batches_refused", detail=str(exc))
                self._atomic_ok = False
            elif exc.err_code in (ERR_WRONG_LAST_SEQUENCE, ERR_WRONG_LAST_MSG_ID):
                log.warning("relay_fenced_off", detail=str(exc))
            raise
        finally:
            for ack in acks:
                ack.cancel()
        return events

    async def _publish_each(self, batch: list[_Outgoing]) -> asyncio.Future[int]:
        """One JetStream publish per message, pipelined (bounded by the JetStream context's
        in-flight limit): duplicates are dropped by message id, one by one."""
        futures = []
        for messages in self._messages_by_stream(batch).values():
            for message in messages:
                futures.append(
                    await self._js.publish_async(
                        message.subject, message.body, headers=message.headers
                    )
                )
        return asyncio.ensure_future(_count_new(futures))

    def _messages_by_stream(self, batch: list[_Outgoing]) -> dict[str, list[OutgoingMessage]]:
        """Each event for the event stream, and IntentDispatched also as a work order."""
        # Work orders first: they are on the way to a payment, the events only to observers.
        by_stream: dict[str, list[OutgoingMessage]] = {
            subjects.DISPATCH_STREAM: [], subjects.EVT_STREAM: []
        }  # fmt: skip
        for event in batch:
            headers = event.headers()
            by_stream[subjects.EVT_STREAM].append(
                OutgoingMessage(subject_for(event.type), event.body, headers)
            )
            if event.order_subject is not None:
                if event.position <= self._replayed_through:
                    headers = {**headers, subjects.HDR_REPLAYED: "true"}
                by_stream[subjects.DISPATCH_STREAM].append(
                    OutgoingMessage(event.order_subject, event.body, headers)
                )
        return by_stream


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One event ready to publish: its headers' values and its message body."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    correlation_id: str
    body: bytes
    hash: bytes
    order_subject: str | None  # set for IntentDispatched: the work order's subject

    def headers(self) -> dict[str, str]:
        return {
            subjects.HDR_MSG_ID: self.event_id,
            subjects.HDR_STREAM_ID: self.stream_id,
            subjects.HDR_POSITION: str(self.position),
            subjects.HDR_STREAM_VERSION: str(self.stream_version),
            subjects.HDR_EVENT_TYPE: self.type,
            subjects.HDR_CORRELATION_ID: self.correlation_id,
        }

    @classmethod
    def stored(cls, event: StoredEvent) -> _Outgoing:
        order = None
        if event.type == "IntentDispatched":
            order = subjects.dispatch_subject(
                str(event.payload["region"]), str(event.payload["node"])
            )
        return cls(
            position=event.position, event_id=event.event_id, stream_id=event.stream_id,
            stream_version=event.stream_version, type=event.type,
            correlation_id=str(event.metadata.get("correlation_id", "")),
            body=encode(to_recorded(event)), hash=event.hash, order_subject=order,
        )  # fmt: skip

    @classmethod
    def handed_over(
        cls, position: int, event: NewEvent, prev_hash: bytes, event_hash: bytes
    ) -> _Outgoing:
        metadata = _decode_metadata.decode(event.metadata)
        order = None
        if event.type == "IntentDispatched":
            target = _decode_order_target.decode(event.payload)
            order = subjects.dispatch_subject(target.region, target.node)
        recorded = RecordedEvent(
            type=event.type, version=event.schema_version, event_id=event.event_id,
            stream_id=event.stream_id, stream_version=event.stream_version, position=position,
            recorded_at_ms=event.recorded_at_ms, metadata=metadata,
            # The writer's canonical JSON, spliced in as it is: not decoded to be re-encoded.
            data=cast(dict[str, Any], msgspec.Raw(event.payload)),
            hash=event_hash.hex(), prev_hash=prev_hash.hex(),
        )  # fmt: skip
        return cls(
            position=position, event_id=event.event_id, stream_id=event.stream_id,
            stream_version=event.stream_version, type=event.type,
            correlation_id=metadata.correlation_id or "", body=encode(recorded),
            hash=event_hash, order_subject=order,
        )  # fmt: skip


class _OrderTarget(msgspec.Struct):
    region: str
    node: str


_decode_metadata = msgspec.json.Decoder(EventMetadata)
_decode_order_target = msgspec.json.Decoder(_OrderTarget)


async def _count_new(futures: list[Any]) -> int:
    acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=PUBLISH_ACK_TIMEOUT_S)
    return sum(1 for ack in acks if not ack.duplicate and ack.stream == subjects.EVT_STREAM)


async def reset_checkpoint(store: PostgresEventStore, position: int) -> None:
    """Make the relay re-publish everything after ``position`` (operators' recovery tool)."""
    await store.set_checkpoint(CHECKPOINT, position)
