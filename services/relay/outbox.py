"""The outbox relay: publish the event log to JetStream in position order, exactly once per
event id (``Nats-Msg-Id``), resuming from a checkpoint kept in PostgreSQL.

This module is the loop; its parts each have one job (ADR 0096):
``cursor.py`` the relay's state as one immutable value with pure transitions, ``start.py``
where a session starts (checking the streams, repairing what JetStream lost, ADR 0062/0075),
``publisher.py`` the fenced sends (ADR 0013), ``leadership.py`` the leader lock (only one
relay publishes at a time; others stand by), ``outgoing.py`` the messages.
A reconnect of the bus ends the session at once: acknowledgements the server lost are given
up rather than waited for, and the next session resumes from the streams (ADR 0097).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from nats.js import JetStreamContext

from services.bus.fenced_publisher import (
    ERR_WRONG_LAST_MSG_ID,
    ERR_WRONG_LAST_SEQUENCE,
    PublishRefused,
)
from services.bus.port import Bus, FencedPublishing
from services.bus.reconnects import Reconnects
from services.cancellation import cancel_requested
from services.engine.committed import CommittedBatches
from services.engine.open_attempts import open_orders_through
from services.eventstore.hashing import chain_hash
from services.eventstore.port import EventStore, NewEvent, StoredEvent
from services.failures import is_transient
from services.relay import cursor as cursors
from services.relay.checkpoint import CHECKPOINT, CHECKPOINT_SEQ, reset_checkpoint, save_checkpoint
from services.relay.cursor import Cursor, Phase
from services.relay.leadership import Leadership
from services.relay.outgoing import PUBLISH_ACK_TIMEOUT_S, Acked, Outgoing, names_an_owner
from services.relay.owners import OwnerLookup
from services.relay.publisher import Publisher
from services.relay.start import StartCheck

__all__ = [
    "CHECKPOINT", "CHECKPOINT_SEQ", "PUBLISH_ACK_TIMEOUT_S", "AcksLost", "OutboxRelay",
    "reset_checkpoint",
]  # fmt: skip

log = structlog.get_logger("corridor.relay")

# Reconnect back-off after a failure: quick first retry, then at most every few seconds.
CHECKPOINT_INTERVAL_S = 0.5
RETRY_BACKOFF_S_FIRST = 0.2
RETRY_BACKOFF_S_MAX = 5.0
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
# Work orders waiting to be re-issued (ADR 0075); beyond this the newest offers are dropped
# and offered again by the sweeper's next round.
REISSUE_QUEUE_MAX = 10_000

_T = TypeVar("_T")


class AcksLost(ConnectionError):
    """The bus reconnected while acknowledgements were awaited: the server may have lost them
    (with the messages or not), so they are given up and the session starts again (ADR 0097)."""


class LeaderLost(ConnectionError):
    """The connection holding the leader lock was closed."""


class OutboxRelay:
    def __init__(
        self,
        store: EventStore,
        js: JetStreamContext | None,
        *,
        bus: Bus,
        fenced: FencedPublishing | None = None,
        batch_max: int = 1000,
        poll_s: float = 1.0,
        ensure_streams: Callable[[], Awaitable[None]] | None = None,
        reconnects: Reconnects | None = None,
        committed: CommittedBatches | None = None,
    ) -> None:
        """``committed``: this process's commits, handed to ``offer`` (ADR 0095)."""
        self._store = store
        # Owners of intents whose events predate owners in metadata (ADR 0067).
        self.owners = OwnerLookup(store)
        self._publisher = Publisher(js, bus, fenced)
        self._start = StartCheck(store, bus)
        self._batch_max = batch_max
        self._poll_s = poll_s
        # Re-declares the streams on every (re)start: a deleted stream comes back and is refilled.
        self._ensure_streams = ensure_streams
        # The bus connection's reconnects: one ends the session (ADR 0097).
        self._reconnects = reconnects
        self._reconnected: asyncio.Future[None] | None = None
        self.cursor = Cursor()
        # (last position of the batch, its acks), oldest first. The published position only
        # moves once a batch and every batch before it are acknowledged.
        self._in_flight: collections.deque[tuple[int, asyncio.Future[Acked]]] = collections.deque()
        self._wake = asyncio.Event()
        self.published = 0
        self.failures = 0
        self.acks_given_up = 0  # batches whose acknowledgements a reconnect made unreliable
        self._saved_at = 0.0
        self.leader = asyncio.Event()
        # (position, event) committed by this process, in position order.
        self._handoff: collections.deque[tuple[int, NewEvent]] = collections.deque()
        self.handed_over = 0  # events published from the handoff rather than read back
        # True while this process's writer is committing: a NOTIFY then most likely announces
        # that very commit, whose events are about to be handed over.
        self.local_writer_busy: Callable[[], bool] = lambda: False
        if committed is not None:
            committed.subscribe("relay", lambda b: self.offer(b.first_position, b.events))
            self.local_writer_busy = committed.busy
        # Work orders to publish again (ADR 0075).
        self._reissues: collections.deque[StoredEvent] = collections.deque()

    @property
    def position(self) -> int:
        """Published and acknowledged through here."""
        return self.cursor.published_through

    @property
    def sent_position(self) -> int:
        """Handed to JetStream through here, acknowledged or not."""
        return self.cursor.sent_through

    @property
    def maybe_published_through(self) -> int:
        """Positions up to here may already be in JetStream: they go out unfenced (ADR 0013)."""
        return self.cursor.maybe_published_through

    @property
    def foreign_messages(self) -> int:
        """Messages found in the streams that the relay did not write (ADR 0062)."""
        return self._start.foreign_messages

    @property
    def reissued(self) -> int:
        """Work orders re-issued (ADR 0075)."""
        return self._publisher.reissued

    async def run(self) -> None:
        """Publish until cancelled. A failure (NATS or PostgreSQL away, a stream deleted) never
        stops the relay: it backs off, reconnects, re-checks the stream and resumes from its
        checkpoint, so nothing committed is left unpublished."""
        backoff_s = RETRY_BACKOFF_S_FIRST
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                self.cursor = cursors.ended(self.cursor, Phase.STANDBY)
                raise
            except Exception as exc:
                if cancel_requested():  # a cancel a client turned into an error (cancellation.py)
                    self.cursor = cursors.ended(self.cursor, Phase.STANDBY)
                    raise asyncio.CancelledError from exc
                self.failures += 1
                self.cursor = cursors.ended(self.cursor, _ended_by(exc))
                # Retried either way: what is committed must be published. A definite failure
                # (services/failures.py) will not pass by itself, so it is logged as an error.
                transient = is_transient(exc)
                (log.warning if transient else log.error)(
                    "relay_failed", error=type(exc).__name__, detail=str(exc)[:200],
                    transient=transient, retry_in_s=backoff_s, phase=self.cursor.phase.value,
                )  # fmt: skip
                self.leader.clear()
                await asyncio.sleep(backoff_s)  # back-off before reconnecting, not synchronisation
                backoff_s = min(backoff_s * 2, RETRY_BACKOFF_S_MAX)
            else:
                return

    async def _run_once(self) -> None:
        leadership = Leadership(self._store, poll_s=self._poll_s)
        await leadership.connect()
        try:
            if self._ensure_streams is not None:
                await self._ensure_streams()
            replayed_through = await self._become_leader(leadership)
            await leadership.listen(self._on_notify)
            # A reconnect from here on ends this session (ADR 0097).
            self._watch_reconnects()
            start = await self._start.start_point()
            self.cursor = cursors.repair_found(self.cursor, start.repair_through)
            if repair_through := self.cursor.repair_through:
                # The dispatch stream lost orders the event stream did not (ADR 0075).
                orders = await open_orders_through(self._store, repair_through)
                log.warning("relay_dispatch_repair", through=repair_through, orders=len(orders))
                self._reissues.extend(orders)
                self.cursor = cursors.repaired(self.cursor)
            self._publisher.forget_sequences()
            log.info("relay_started", position=start.position)
            in_flight = self._in_flight
            in_flight.clear()
            start_hash = await self._store.hash_at(start.position)
            self.cursor = cursors.started(
                self.cursor, position=start.position, seq=start.seq, sent_hash=start_hash,
                maybe_published_through=start.maybe_published_through,
                replayed_through=replayed_through,
            )  # fmt: skip
            try:
                while True:
                    if leadership.lost():
                        # Another relay may hold the lock now, and two publishing at once
                        # would interleave positions.
                        raise LeaderLost("the relay's leader connection was lost")
                    self._check_reconnects()
                    self._wake.clear()
                    if self._reissues:
                        await self._settle_all()
                        await self._publisher.publish_reissues(
                            self._reissues, batch_max=self._batch_max, settled=self._settled
                        )
                    batch = self._take_handoff()
                    if not batch:
                        batch = await self._await_own_commit()
                    if not batch and self.cursor.wants_log:
                        # Only when something may be in the log that was not handed over:
                        # at start, after a NOTIFY from another writer, or on the idle poll.
                        batch = [
                            Outgoing.stored(event)
                            for event in await self._store.read_all(
                                after_position=self.cursor.sent_through, limit=self._batch_max
                            )
                        ]
                        full = len(batch) == self._batch_max  # more may follow
                        self.cursor = cursors.read_log(self.cursor, batch_full=full)
                    if not batch:
                        await self._settle_all()
                        # Idle: save now if the last save is old enough, else wake up for it.
                        due_in_s = (
                            self._saved_at
                            + CHECKPOINT_INTERVAL_S
                            - asyncio.get_running_loop().time()
                        )
                        if due_in_s <= 0:
                            await self._save_checkpoint()
                        wait_s = self._poll_s
                        if self.cursor.unsaved:
                            wait_s = min(wait_s, max(due_in_s, 0.0))
                        try:
                            await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
                        except TimeoutError:
                            self.cursor = cursors.poll_due(self.cursor)  # a NOTIFY may be lost
                        continue
                    batch = await self._with_owners(batch)
                    acks = await self._publisher.publish(batch, self.cursor, self._settle_all)
                    in_flight.append((batch[-1].position, acks))
                    self.cursor = cursors.sent(self.cursor, batch[-1].position, batch[-1].hash)
                    while in_flight and (
                        len(in_flight) > BATCHES_IN_FLIGHT_MAX or in_flight[0][1].done()
                    ):
                        await self._acknowledged()
                    if asyncio.get_running_loop().time() - self._saved_at >= CHECKPOINT_INTERVAL_S:
                        await self._save_checkpoint()
            finally:
                if in_flight and self._reconnected is not None and self._reconnected.done():
                    self.acks_given_up += len(in_flight)
                for _, acks in in_flight:
                    acks.cancel()
                in_flight.clear()
        finally:
            if self._reconnected is not None:
                self._reconnected.cancel()
                self._reconnected = None
            await leadership.close()

    def _watch_reconnects(self) -> None:
        if self._reconnects is None:
            return
        self._reconnected = asyncio.ensure_future(self._reconnects.after(self._reconnects.count))
        # An idle relay wakes up for it, to end the session now.
        self._reconnected.add_done_callback(lambda _: self._wake.set())

    def _check_reconnects(self) -> None:
        if self._reconnected is not None and self._reconnected.done():
            raise AcksLost("the bus reconnected: acknowledgements on their way may be lost")

    async def _settled(self, pending: Awaitable[_T]) -> _T:
        """``pending``'s result, unless the bus reconnects first: then the acknowledgements
        it waits for may never come, and AcksLost ends the session at once (ADR 0097)."""
        future = asyncio.ensure_future(pending)
        reconnected = self._reconnected
        if reconnected is None:
            return await future
        try:
            either: set[asyncio.Future[Any]] = {future, reconnected}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not future.done():
                future.cancel()
        if future.done() and not future.cancelled():
            return future.result()
        self._check_reconnects()
        return await future  # cancelled from outside

    async def _settle_all(self) -> None:
        while self._in_flight:
            await self._acknowledged()

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

    async def _await_own_commit(self) -> list[Outgoing]:
        """The handoff of the commit this process's writer has under way, if it is the next
        thing to publish; [] at once if the writer is idle or the handoff shows a gap."""
        deadline_s = asyncio.get_running_loop().time() + HANDOFF_WAIT_S_MAX
        while not self._handoff and self.local_writer_busy():
            remaining_s = deadline_s - asyncio.get_running_loop().time()
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
            log.warning(
                "relay_handoff_overflow", held=len(self._handoff), sent=self.cursor.sent_through
            )
            self._handoff.clear()
        self._handoff.extend((first_position + i, event) for i, event in enumerate(events))
        self._wake.set()

    def _take_handoff(self) -> list[Outgoing]:
        """The handed-over events right after the sent position, with their hash chain."""
        sent_position = self.cursor.sent_through
        handoff = self._handoff
        while handoff and handoff[0][0] <= sent_position:
            handoff.popleft()
        prev_hash = self.cursor.sent_hash
        if prev_hash is None or not handoff or handoff[0][0] != sent_position + 1:
            return []
        batch: list[Outgoing] = []
        while handoff and len(batch) < self._batch_max:
            position, event = handoff[0]
            if position != sent_position + len(batch) + 1:
                break
            handoff.popleft()
            # The same chain append_events computes in the database (hashing.py).
            event_hash = chain_hash(prev_hash, position, event.body)
            batch.append(Outgoing.handed_over(position, event, prev_hash, event_hash))
            prev_hash = event_hash
        self.handed_over += len(batch)
        return batch

    async def _acknowledged(self) -> None:
        """Wait for the oldest batch in flight; it leaves the queue once acknowledged."""
        last_position, acks = self._in_flight[0]
        acked = await self._settled(acks)
        self._in_flight.popleft()
        self.published += acked.new_events
        self.cursor = cursors.acknowledged(self.cursor, last_position, acked.evt_seq)

    async def _save_checkpoint(self) -> None:
        # Saved at most every CHECKPOINT_INTERVAL_S (busy or idle), not after every batch: a
        # checkpoint is a durable commit, and saving it whenever the relay caught up cost one
        # fsync'd transaction per relay cycle, about two per intent under a moderate load.
        # A crash only re-publishes what JetStream then drops as duplicates (Nats-Msg-Id) or
        # consumers dedupe by position.
        if self.cursor.unsaved:
            cursor = self.cursor
            await save_checkpoint(self._store, cursor.published_through, cursor.published_seq)
            # Only the notify handler ran meanwhile: the published position is what was saved.
            self.cursor = cursors.saved(self.cursor)
        self._saved_at = asyncio.get_running_loop().time()

    def _on_notify(self, position: int | None) -> None:
        # The commit's last position: a commit already handed over and sent needs no read of
        # the log, and one that is being handed over needs none either.
        before = self.cursor
        self.cursor = cursors.notified(before, position)
        if self.cursor is not before:
            self._wake.set()

    async def _become_leader(self, leadership: Leadership) -> int:
        """Wait for the leader lock; returns the head of the log then."""
        await leadership.acquire()
        # Everything committed so far may have been published by an earlier leader (or an
        # earlier run of this one): work orders up to here go out marked as replays.
        replayed_through = await self._store.head_position()
        self.leader.set()
        return replayed_through

    async def _with_owners(self, batch: list[Outgoing]) -> list[Outgoing]:
        """The batch with every intent event's owner: events logged before owners were
        recorded (ADR 0067) get theirs from the log, one read per batch that has any."""
        missing = {e.stream_id for e in batch if e.owner is None and names_an_owner(e.type)}
        if not missing:
            return batch  # the steady state: every new intent event names its owner
        owners = await self.owners.owners(missing)
        return [
            dataclasses.replace(e, owner=owners[e.stream_id])
            if e.owner is None and e.stream_id in owners
            else e
            for e in batch
        ]


def _ended_by(exc: Exception) -> Phase:
    """Why a session ended, as the cursor's phase."""
    if isinstance(exc, PublishRefused) and exc.err_code in (
        ERR_WRONG_LAST_SEQUENCE,
        ERR_WRONG_LAST_MSG_ID,
    ):
        return Phase.FENCED
    if isinstance(exc, (AcksLost, LeaderLost)):
        return Phase.STEPPING_DOWN
    return Phase.FAILED
