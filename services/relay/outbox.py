"""The outbox relay: publish the event log to JetStream in position order, exactly once per
event id (``Nats-Msg-Id``), resuming from a checkpoint kept in PostgreSQL.

JetStream is only a transport. At start the relay checks that the stream still holds the message
its checkpoint names and rewinds if JetStream lost messages, so everything is re-published from
the log. If the dispatch stream lost work orders the event stream still holds, it re-issues the
orders of every attempt still waiting for its node (ADR 0075).
It trusts no message in the streams that it cannot match against the log (ADR 0062):
a header someone else wrote never makes it rewind or stop fencing.
Only one relay publishes at a time (a PostgreSQL advisory lock); others stand by.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from schemas.codec import encode
from schemas.events import EVENT_TYPES
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
from services.engine.committed import CommittedBatches
from services.engine.event_codec import CHECKPOINT_EVENT, owner_of, subject_for, to_recorded
from services.engine.open_attempts import last_order_position, open_orders_through
from services.eventstore.hashing import chain_hash
from services.eventstore.port import NewEvent, StoredEvent
from services.eventstore.postgres import PostgresEventStore
from services.failures import is_transient
from services.relay.owners import OwnerLookup

log = structlog.get_logger("corridor.relay")

_LEADER_LOCK_KEY = 0x72656C61  # "rela"
CHECKPOINT = "relay:jetstream"
# Saved with the checkpoint, in the same statement: the event stream's sequence of the message
# at the checkpoint's position (0: not known). At the next start that one message proves that
# the stream still holds everything the checkpoint says was published (ADR 0062).
CHECKPOINT_SEQ = "relay:jetstream:evt_seq"
# Messages the relay reads back from a stream's end at start to find the last one it wrote.
# Nobody else may publish into these streams (ADR 0060), so the last message is nearly always
# the relay's own; the limit bounds the start against a stream stuffed with foreign messages,
# beyond which the relay does not guess where its own messages end.
TAIL_SCAN_MSGS_MAX = 64
# A Corridor-Position header longer than this is not a position (bigint has 19 digits).
POSITION_HEADER_CHARS_MAX = 20
# Foreign messages' subjects and headers are their sender's text: logged no longer than this.
FOREIGN_LOG_CHARS_MAX = 128
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
# Work orders waiting to be re-issued (ADR 0075); beyond this the newest offers are dropped
# and offered again by the sweeper's next round.
REISSUE_QUEUE_MAX = 10_000


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
        committed: CommittedBatches | None = None,
    ) -> None:
        """``committed``: this process's commits, handed to ``offer`` (ADR 0095)."""
        self._store = store
        self._js = js
        # Owners of intents whose events predate owners in metadata (ADR 0067).
        self.owners = OwnerLookup(store)
        # Publishes fenced by the streams' expected sequences, in atomic batches when large
        # (ADR 0013). Without it every event is a plain JetStream publish.
        self._fenced = fenced
        self._atomic_ok = True  # False once the server refuses atomic batches
        # Positions up to here may already be in JetStream (an earlier run published them):
        # they go out one by one, as an atomic batch holding a duplicate is refused whole.
        self._maybe_published_through = 0
        # The event stream's sequence of the message at ``position`` (0: not known).
        self._position_seq = 0
        # Messages found in the streams that the relay did not write (ADR 0062).
        self.foreign_messages = 0
        # Each stream's last sequence as this relay expects it; None when unknown.
        self._expected_seq: dict[str, int] | None = None
        self._in_flight: collections.deque[tuple[int, asyncio.Future[_Acked]]] = collections.deque()
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
        if committed is not None:
            committed.subscribe("relay", lambda b: self.offer(b.first_position, b.events))
            self.local_writer_busy = committed.busy
        # Work orders to publish again (ADR 0075), and how many went out.
        self._reissues: collections.deque[StoredEvent] = collections.deque()
        self.reissued = 0
        # Set at start when the dispatch stream lost orders: positions through here to repair.
        self._repair_through = 0

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
                # Retried either way: what is committed must be published. A definite failure
                # (services/failures.py) will not pass by itself, so it is logged as an error.
                transient = is_transient(exc)
                (log.warning if transient else log.error)(
                    "relay_failed", error=type(exc).__name__, detail=str(exc)[:200],
                    transient=transient, retry_in_s=backoff_s,
                )  # fmt: skip
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
            self.position, self._position_seq = await self._start_position()
            if self._repair_through:
                # The dispatch stream lost orders the event stream did not (ADR 0075).
                orders = await open_orders_through(self._store, self._repair_through)
                log.warning(
                    "relay_dispatch_repair", through=self._repair_through, orders=len(orders)
                )
                self._reissues.extend(orders)
                self._repair_through = 0
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
                    if self._reissues:
                        while in_flight:
                            await self._acknowledged(in_flight.popleft())
                        await self._publish_reissues()
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
                    batch = await self._with_owners(batch)
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

    def reissue(self, orders: Sequence[StoredEvent]) -> int:
        """Publish these logged work orders again (the sweeper, ADR 0075); returns how many
        were taken. Only the leader publishes; a standby takes none."""
        if not self.leader.is_set():
            return 0
        room = max(0, REISSUE_QUEUE_MAX - len(self._reissues))
        taken = list(orders)[:room]
        self._reissues.extend(taken)
        if taken:
            self._wake.set()
        return len(taken)

    async def _publish_reissues(self) -> None:
        """Publish the queued orders to the dispatch stream, as the log holds them (signed),
        under new message ids so JetStream's duplicate window does not drop them. Marked
        replayed: an executor asks the engine before paying, as for every order (ADR 0063)."""
        self._expected_seq = None  # they move the dispatch stream's sequence
        token = str(time.time_ns())
        while self._reissues:
            chunk = [self._reissues[i] for i in range(min(len(self._reissues), self._batch_max))]
            acks = []
            for event in chunk:
                out = _Outgoing.stored(event)
                assert out.order_subject is not None, "only work orders are re-issued"
                headers = {
                    **out.headers(),
                    subjects.HDR_REPLAYED: "true",
                    subjects.HDR_REISSUED: token,
                    subjects.HDR_MSG_ID: f"{event.event_id}:reissue:{token}",
                }
                acks.append(
                    await self._js.publish_async(out.order_subject, out.body, headers=headers)
                )
            await asyncio.wait_for(asyncio.gather(*acks), timeout=PUBLISH_ACK_TIMEOUT_S)
            for _ in chunk:
                self._reissues.popleft()
            self.reissued += len(chunk)
            log.info("relay_reissued_orders", orders=len(chunk))

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

    async def _acknowledged(self, entry: tuple[int, asyncio.Future[_Acked]]) -> None:
        last_position, acks = entry
        acked = await acks
        self.published += acked.new_events
        self.position = last_position
        self._position_seq = acked.evt_seq

    async def _save_checkpoint(self) -> None:
        # Saved at most every CHECKPOINT_INTERVAL_S (busy or idle), not after every batch: a
        # checkpoint is a durable commit, and saving it whenever the relay caught up cost one
        # fsync'd transaction per relay cycle, about two per intent under a moderate load.
        # A crash only re-publishes what JetStream then drops as duplicates (Nats-Msg-Id) or
        # consumers dedupe by position.
        if self.position != self._saved_position:
            await _save_checkpoint(self._store, self.position, self._position_seq)
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

    @property
    def maybe_published_through(self) -> int:
        """Positions up to here may already be in JetStream: they go out unfenced (ADR 0013)."""
        return self._maybe_published_through

    async def _start_position(self) -> tuple[int, int]:
        """Where to resume, and the event stream's sequence of that position's message.

        Only what the relay can check decides (ADR 0062): its checkpoint in PostgreSQL, and
        messages in the streams that match the log's event at their position. A foreign
        message (whatever its headers claim) is flagged and skipped."""
        checkpoint, checkpoint_seq = await _load_checkpoint(self._store)
        head = await self._store.head_position()
        held = await self._holds_checkpoint(checkpoint, checkpoint_seq, head)
        evt_end = await self._stream_end(subjects.EVT_STREAM, head)
        dispatch_end = await self._stream_end(subjects.DISPATCH_STREAM, head)
        if held is _Held.YES and evt_end.known and evt_end.position < checkpoint:
            # The stream holds the checkpoint, so an end below it is a replayed copy of an old
            # message: nothing tells where the relay's own messages end.
            log.warning("relay_stream_end_contradicts_checkpoint", checkpoint=checkpoint,
                        stream_position=evt_end.position)  # fmt: skip
            evt_end = _StreamEnd.unknown()
        self._maybe_published_through = maybe_published_through(evt_end, dispatch_end, head)
        position = resume_position(checkpoint, held, evt_end)
        if dispatch_end.known and position > 0:
            last_order = await last_order_position(self._store, through_position=position)
            if last_order > dispatch_end.position:
                # The event stream holds what the dispatch stream lost (deleted, or emptied by
                # its limits): events are not re-published, so the open orders are re-issued.
                log.warning("relay_dispatch_stream_lost", last_order=last_order,
                            stream_position=dispatch_end.position)  # fmt: skip
                self._repair_through = position
        seq = 0  # the event stream's sequence of the message at ``position``, if known
        if held is _Held.YES and position == checkpoint:
            seq = checkpoint_seq
        elif evt_end.known and evt_end.position == position:
            seq = evt_end.seq
        if position < checkpoint:
            if not evt_end.known:
                log.error("relay_stream_lost_and_end_unknown", checkpoint=checkpoint)
            log.warning("relay_rewind", checkpoint=checkpoint, stream_position=position)
            await _save_checkpoint(self._store, position, seq)
        return position, seq

    async def _holds_checkpoint(self, checkpoint: int, seq: int, head: int) -> _Held:
        """Whether the event stream still holds the message at the checkpoint's position."""
        if checkpoint == 0:
            return _Held.YES
        if seq == 0:
            return _Held.UNCHECKED
        try:
            msg = await self._js.get_msg(subjects.EVT_STREAM, seq=seq)
        except NotFoundError:
            return _Held.NO
        position = await self._ours(msg, head)
        if position is None:
            self._flag_foreign(subjects.EVT_STREAM, seq, msg)
            return _Held.NO  # the stream was replaced: its sequence now holds something else
        # Ours at another position: the checkpoint was moved without its sequence (an
        # operator's reset), so this message proves nothing about it.
        return _Held.YES if position == checkpoint else _Held.UNCHECKED

    async def _stream_end(self, stream: str, head: int) -> _StreamEnd:
        """The last message of the relay's own in ``stream``, read back from its end."""
        state = (await self._js.stream_info(stream)).state
        first_seq = max(state.first_seq, 1)
        seq = state.last_seq if state.messages else 0
        scanned = 0
        while seq >= first_seq:
            if scanned == TAIL_SCAN_MSGS_MAX:
                log.warning("relay_stream_end_unknown", stream=stream, scanned=scanned)
                return _StreamEnd.unknown()
            scanned += 1
            try:
                msg = await self._js.get_msg(stream, seq=seq)
            except NotFoundError:  # deleted from the middle of the stream
                seq -= 1
                continue
            position = await self._ours(msg, head)
            if position is not None and (msg.headers or {}).get(subjects.HDR_REISSUED):
                seq -= 1  # a re-issued old order says nothing about where the stream ends
                continue
            if position is not None:
                return _StreamEnd(position=position, seq=seq, known=True)
            self._flag_foreign(stream, seq, msg)
            seq -= 1
        return _StreamEnd(position=0, seq=0, known=True)  # none of the log's events in it

    async def _ours(self, msg: RawStreamMsg, head: int) -> int | None:
        """The position of the log's event that ``msg`` carries, or None if it carries none:
        its position header, message id and body must all match the event in the log."""
        headers = msg.headers or {}
        raw_position = headers.get(subjects.HDR_POSITION, "")
        if not (0 < len(raw_position) <= POSITION_HEADER_CHARS_MAX and raw_position.isdigit()):
            return None
        position = int(raw_position)
        if not 0 < position <= head:
            return None
        try:
            stamp = _decode_stamp.decode(msg.data or b"")
        except (msgspec.DecodeError, ValueError):
            return None
        [event] = await self._store.read_all(after_position=position - 1, limit=1)
        assert event.position == position, "positions in the log are gapless"
        # A re-issued order (ADR 0075) carries its round's token in its message id.
        reissued = headers.get(subjects.HDR_REISSUED)
        msg_id = f"{event.event_id}:reissue:{reissued}" if reissued else event.event_id
        if not (
            headers.get(subjects.HDR_MSG_ID) == msg_id
            and stamp.event_id == event.event_id
            and stamp.position == position
            and stamp.hash == event.hash.hex()
        ):
            return None
        return position

    def _flag_foreign(self, stream: str, seq: int, msg: RawStreamMsg) -> None:
        self.foreign_messages += 1
        claimed = (msg.headers or {}).get(subjects.HDR_POSITION, "")
        log.warning(
            "relay_foreign_message", stream=stream, seq=seq,
            subject=(msg.subject or "")[:FOREIGN_LOG_CHARS_MAX],
            claimed_position=claimed[:FOREIGN_LOG_CHARS_MAX],
        )  # fmt: skip

    async def _publish(self, batch: list[_Outgoing]) -> asyncio.Future[_Acked]:
        """Send the batch; returns a future of what JetStream stored (the number of new events
        and the event stream's sequence of the last one), which fails if JetStream refuses or
        does not acknowledge the batch in time."""
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
        # Every event goes to the event stream, the last one last: it lands at this sequence.
        evt_seq = self._expected_seq[subjects.EVT_STREAM]
        return asyncio.ensure_future(self._count_fenced(acks, _Acked(len(batch), evt_seq)))

    async def _count_fenced(self, acks: list[asyncio.Future[int]], acked: _Acked) -> _Acked:
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
        return acked

    async def _publish_each(self, batch: list[_Outgoing]) -> asyncio.Future[_Acked]:
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

    async def _with_owners(self, batch: list[_Outgoing]) -> list[_Outgoing]:
        """The batch with every intent event's owner: events logged before owners were
        recorded (ADR 0067) get theirs from the log, one read per batch that has any."""
        missing = {e.stream_id for e in batch if e.owner is None and _names_an_owner(e.type)}
        if not missing:
            return batch  # the steady state: every new intent event names its owner
        owners = await self.owners.owners(missing)
        return [
            dataclasses.replace(e, owner=owners[e.stream_id])
            if e.owner is None and e.stream_id in owners
            else e
            for e in batch
        ]

    def _messages_by_stream(self, batch: list[_Outgoing]) -> dict[str, list[OutgoingMessage]]:
        """Each event for the event stream, and IntentDispatched also as a work order."""
        # Work orders first: they are on the way to a payment, the events only to observers.
        by_stream: dict[str, list[OutgoingMessage]] = {
            subjects.DISPATCH_STREAM: [], subjects.EVT_STREAM: []
        }  # fmt: skip
        for event in batch:
            headers = event.headers()
            by_stream[subjects.EVT_STREAM].append(
                OutgoingMessage(subject_for(event.type, event.owner), event.body, headers)
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
    owner: str | None  # the intent's caller, the event subject's token (ADR 0067)

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
            owner=owner_of(event),
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
            hash=event_hash, order_subject=order, owner=metadata.owner,
        )  # fmt: skip


def _names_an_owner(event_type: str) -> bool:
    """Whether an event of this type belongs to an intent (policy, checkpoints, agent keys and
    dead letters do not)."""
    return event_type in EVENT_TYPES and event_type != CHECKPOINT_EVENT


class _OrderTarget(msgspec.Struct):
    region: str
    node: str


_decode_metadata = msgspec.json.Decoder(EventMetadata)
_decode_order_target = msgspec.json.Decoder(_OrderTarget)


async def _count_new(futures: list[Any]) -> _Acked:
    acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=PUBLISH_ACK_TIMEOUT_S)
    # The event stream's messages go out last, the batch's last event last (a duplicate's
    # acknowledgement gives the sequence of the message already stored).
    assert acks and acks[-1].stream == subjects.EVT_STREAM
    new_events = sum(1 for ack in acks if not ack.duplicate and ack.stream == subjects.EVT_STREAM)
    return _Acked(new_events, acks[-1].seq)


@dataclass(frozen=True, slots=True)
class _Acked:
    """What JetStream acknowledged for one batch."""

    new_events: int  # stored as new (not dropped as duplicates)
    evt_seq: int  # the event stream's sequence of the batch's last event


class _Held(enum.Enum):
    """Whether the event stream still holds the message at the relay's checkpoint."""

    YES = "yes"
    NO = "no"  # proven lost: the sequence saved with the checkpoint holds nothing of it
    UNCHECKED = "unchecked"  # no sequence was saved with this checkpoint


@dataclass(frozen=True, slots=True)
class _StreamEnd:
    """The last message of the relay's own found in a stream."""

    position: int  # 0: the stream holds none of the log's events
    seq: int
    known: bool  # False: only foreign messages within TAIL_SCAN_MSGS_MAX of the end

    @classmethod
    def unknown(cls) -> _StreamEnd:
        return cls(position=0, seq=0, known=False)


def resume_position(checkpoint: int, held: _Held, evt_end: _StreamEnd) -> int:
    """Where the relay resumes: its checkpoint, unless the event stream lost messages.

    A stream that holds the checkpoint's message lost nothing the relay would re-publish,
    whatever else is in it. Without that proof the relay rewinds to its own last message in the
    stream, if that is below the checkpoint; where that is unknown (only foreign messages at
    the end) it rewinds to the start if the loss is proven, and otherwise keeps its
    checkpoint: it does not rewind on what it cannot check."""
    if held is _Held.YES:
        return checkpoint
    if not evt_end.known:
        return 0 if held is _Held.NO else checkpoint
    return min(checkpoint, evt_end.position)


def maybe_published_through(evt_end: _StreamEnd, dispatch_end: _StreamEnd, head: int) -> int:
    """Positions that may be in JetStream already. Where a stream's end is unknown, everything
    committed may be: unfenced publishes only cost the fence, while fencing a message already
    stored would be refused on every attempt (ADR 0013)."""
    if not (evt_end.known and dispatch_end.known):
        return head
    return max(evt_end.position, dispatch_end.position)


class _Stamp(msgspec.Struct):
    """The fields of a published event that tie it to the log."""

    position: int
    event_id: str
    hash: str


_decode_stamp = msgspec.json.Decoder(_Stamp)


async def _load_checkpoint(store: PostgresEventStore) -> tuple[int, int]:
    """The relay's checkpoint and the sequence saved with it, read together."""
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT name, position FROM checkpoints WHERE name = ANY($1::text[])",
            [CHECKPOINT, CHECKPOINT_SEQ],
        )
    saved = {row["name"]: int(row["position"]) for row in rows}
    return saved.get(CHECKPOINT, 0), saved.get(CHECKPOINT_SEQ, 0)


async def _save_checkpoint(store: PostgresEventStore, position: int, evt_seq: int) -> None:
    """The checkpoint and its sequence in one statement: they never disagree."""
    assert position >= 0 and evt_seq >= 0
    async with store.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO checkpoints (name, position) VALUES ($1, $2), ($3, $4)"
            " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
            CHECKPOINT, position, CHECKPOINT_SEQ, evt_seq,
        )  # fmt: skip


async def reset_checkpoint(store: PostgresEventStore, position: int) -> None:
    """Make the relay re-publish everything after ``position`` (operators' recovery tool)."""
    await _save_checkpoint(store, position, 0)
