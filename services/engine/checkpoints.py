"""Signed checkpoints of the log's hash chain: tamper evidence beyond the database (ADR 0065).

Whoever can write the events table can rewrite history and recompute the hash chain; they
cannot sign. At least every ``CHECKPOINT_EVERY_EVENTS`` events or ``CHECKPOINT_EVERY_S``
seconds (whichever comes first, and only when the log grew) the engine signs the chain head:

    canonical bytes = compact JSON of ["corridor/checkpoint/v1", key_id, position, hash_hex]

records the checkpoint as a ``LogCheckpointSigned`` event on the stream ``log-checkpoints``,
and publishes it to the JetStream stream ``CORRIDOR_CHECKPOINTS``, created with
``deny_delete`` and ``deny_purge``, with ``Nats-Msg-Id`` = the checkpoint id. The verifier is
``services/eventstore/checkpoint_verify.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Final

import msgspec
import structlog

from schemas.events import LogCheckpointSigned
from schemas.records import EventMetadata
from services.bus import subjects
from services.bus.port import Bus
from services.engine.clock import Clock
from services.engine.committed import CommittedBatch, CommittedBatches, Writer
from services.engine.event_codec import to_new_events
from services.eventstore.checkpoint_verify import (
    CANONICAL_TAG,
    CHECKPOINT_STREAM_ID,
    checkpoint_message,
)
from services.eventstore.port import ConcurrencyConflict, EventStore
from services.failures import is_transient
from services.signing.port import Signer, b64url

__all__ = ["CANONICAL_TAG", "CHECKPOINT_STREAM_ID", "Checkpointer", "checkpoint_message"]

log = structlog.get_logger("corridor.checkpoints")

# What a rewrite of the log can touch without failing verification against the engine's key:
# only the events after the newest checkpoint. 1,000 events bound that to about a tenth of a
# second of full load, for one signature (~50 us) and one one-row append per 1,000 events.
CHECKPOINT_EVERY_EVENTS: Final = 1_000
# A quiet engine still signs its head within 10 s of any new event: the unsigned tail is
# bounded in time too, and a checkpoint every 10 s at most is ~3 million a year, ~1 GB.
CHECKPOINT_EVERY_S: Final = 10.0
# Events read at a time when looking for anything but checkpoints since the last one signed.
NEWS_PAGE_EVENTS: Final = 64
# Checkpoints kept for a republish while NATS is away; beyond this the oldest are left to the
# table alone (verification still checks them there).
UNPUBLISHED_MAX: Final = 1_000
_ACTOR: Final = "engine/checkpoints"
# nats-py's default JetStream publish timeout, which checkpoint publishes always had.
PUBLISH_TIMEOUT_S: Final = 5.0
# JetStream stores a message carrying this only in the stream it names.
HDR_EXPECTED_STREAM: Final = "Nats-Expected-Stream"
_decode_checkpoint = msgspec.json.Decoder(LogCheckpointSigned)


def checkpoint_id_for(position: int, hash_hex: str) -> str:
    """Deterministic: the same head signed twice (two engines, a retry) is one checkpoint."""
    return f"ckpt-{position}-{hash_hex[:16]}"


def sign_checkpoint(
    signer: Signer, *, position: int, chain_hash: bytes, signed_at_ms: int
) -> LogCheckpointSigned:
    hash_hex = chain_hash.hex()
    signature = signer.sign(checkpoint_message(signer.key_id, position, hash_hex))
    return LogCheckpointSigned(
        checkpoint_id=checkpoint_id_for(position, hash_hex),
        position=position,
        hash=hash_hex,
        key_id=signer.key_id,
        signature=b64url(signature),
        signed_at_ms=signed_at_ms,
    )


class Checkpointer:
    """Signs the chain head when ``every_events`` new events were committed here by the
    writer loop (heard on ``committed``) or ``every_s`` passed, if the log grew since. Its own
    checkpoint events are published on ``committed`` too (for the relay)."""

    def __init__(
        self,
        store: EventStore,
        bus: Bus,
        signer: Signer,
        clock: Clock,
        *,
        every_events: int = CHECKPOINT_EVERY_EVENTS,
        every_s: float = CHECKPOINT_EVERY_S,
        committed: CommittedBatches | None = None,
    ) -> None:
        assert every_events >= 1 and every_s > 0
        self._store = store
        self._bus = bus
        self._signer = signer
        self._clock = clock
        self._every_events = every_events
        self._every_s = every_s
        self._due = asyncio.Event()
        self._since = 0  # events committed by this process since the last checkpoint
        self._version = 0  # of the stream log-checkpoints, as last read or written
        # The position of the newest checkpoint event: a head no further than this has
        # nothing new to sign (the checkpoint's own event needs no checkpoint of its own).
        self._covered = 0
        self._unpublished: deque[LogCheckpointSigned] = deque(maxlen=UNPUBLISHED_MAX)
        self.signed = 0
        self._committed = committed if committed is not None else CommittedBatches()
        self._committed.subscribe("checkpoints", self.observe)

    def observe(self, batch: CommittedBatch) -> None:
        """The writer loop's commits: count, and wake the loop when a checkpoint is due."""
        if batch.writer is not Writer.COMMANDS:
            return
        self._since += len(batch.events)
        if self._since >= self._every_events:
            self._due.set()

    async def load(self) -> None:
        stored = await self._store.read_stream(CHECKPOINT_STREAM_ID)
        if stored:
            self._version = stored[-1].stream_version
            self._covered = stored[-1].position

    async def run(self) -> None:
        await self.load()
        try:
            await self.republish_lost()
        except Exception as exc:  # NATS away or the stream not readable: the table holds them
            log.warning("checkpoint_stream_unchecked", error=type(exc).__name__)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), timeout=self._every_s)
            self._due.clear()
            try:
                await self.checkpoint_now()
            except ConcurrencyConflict as exc:
                log.warning("checkpoint_unavailable", error=type(exc).__name__)
            except Exception as exc:
                # Tried again at the next tick either way: the head is still unsigned, not
                # lost. A definite failure is a fault to see, and must not end the task.
                if not is_transient(exc):
                    log.error("checkpoint_failed", error=type(exc).__name__, exc_info=exc)
                else:
                    log.warning("checkpoint_unavailable", error=type(exc).__name__)

    async def republish_lost(self) -> int:
        """Publish again the checkpoints the stream lost; returns how many.

        The stream refuses deletes and purges (ADR 0065), so it loses messages only when it is
        deleted whole: then it holds fewer checkpoints than the log, and what it holds (if
        anything) was published since, after the ones it lost. Those before its first
        message are published again from the log (ADR 0075)."""
        state = await self._bus.stream_state(subjects.CHECKPOINT_STREAM)
        if state.messages >= self._version:
            return 0
        first_position = None
        if state.messages:
            first = await self._bus.get_message(subjects.CHECKPOINT_STREAM, state.first_seq)
            first_position = _decode_checkpoint.decode(first.data).position
        logged = [
            msgspec.convert(stored.payload, LogCheckpointSigned)
            for stored in await self._store.read_stream(CHECKPOINT_STREAM_ID)
        ]
        lost = [c for c in logged if first_position is None or c.position < first_position]
        for checkpoint in lost:
            await self._publish(checkpoint)
        log.warning("checkpoint_stream_repaired", republished=len(lost), held=state.messages)
        return len(lost)

    async def checkpoint_now(self) -> LogCheckpointSigned | None:
        """Sign, record and publish the current head; ``None`` if nothing new to sign."""
        await self._publish_pending()
        # Counted from here: events committed while this one is signed go to the next.
        self._since = 0
        head = await self._store.head_position()
        if head <= self._covered:
            return None
        if not await self._news_since(self._covered, head):
            # Only checkpoints since (another engine's too): signing them would give that
            # engine a new head to sign in turn, for ever (found by the simulation, ADR 0100).
            self._covered = head
            return None
        chain_hash = await self._store.hash_at(head)
        assert chain_hash is not None, "a committed position has a hash"
        checkpoint = sign_checkpoint(
            self._signer, position=head, chain_hash=chain_hash, signed_at_ms=self._clock.now_ms()
        )
        position = await self._record(checkpoint)
        self._covered = max(self._covered, position)
        self.signed += 1
        self._unpublished.append(checkpoint)
        await self._publish_pending()
        return checkpoint

    async def _news_since(self, covered: int, head: int) -> bool:
        """Whether anything but a checkpoint was committed in (``covered``, ``head``]: mostly
        the first event read says so."""
        after = covered
        while after < head:
            page = await self._store.read_all(
                after_position=after, limit=min(head - after, NEWS_PAGE_EVENTS)
            )
            if not page:
                return False
            if any(stored.stream_id != CHECKPOINT_STREAM_ID for stored in page):
                return True
            after = page[-1].position
        return False

    async def _record(self, checkpoint: LogCheckpointSigned) -> int:
        meta = EventMetadata(
            correlation_id=checkpoint.checkpoint_id,
            causation_id=checkpoint.checkpoint_id,
            actor=_ACTOR,
        )
        for _ in range(3):
            events = to_new_events(
                CHECKPOINT_STREAM_ID,
                self._version + 1,
                [checkpoint],
                meta,
                checkpoint.signed_at_ms,
            )
            try:
                first = await self._store.append(events)
            except ConcurrencyConflict:
                await self.load()  # another engine checkpointed: follow its version
                continue
            assert first is not None
            self._version += 1
            self._committed.publish(CommittedBatch(Writer.CHECKPOINTS, first, events))
            return first
        raise ConcurrencyConflict("log-checkpoints: too much contention")

    async def _publish_pending(self) -> None:
        """Publish what is not yet acknowledged, oldest first; left for the next tick if NATS
        is away (the table holds every checkpoint meanwhile)."""
        while self._unpublished:
            checkpoint = self._unpublished[0]
            try:
                await self._publish(checkpoint)
            except Exception as exc:  # a timeout, no responders, a lost connection
                log.warning("checkpoint_publish_failed", error=type(exc).__name__)
                return
            self._unpublished.popleft()

    async def _publish(self, checkpoint: LogCheckpointSigned) -> None:
        headers = {
            subjects.HDR_MSG_ID: checkpoint.checkpoint_id,
            # Stored in the checkpoint stream or refused, never in another that took the
            # subject (nats-py's ``stream=``, ADR 0065).
            HDR_EXPECTED_STREAM: subjects.CHECKPOINT_STREAM,
        }
        await self._bus.publish(
            subjects.CHECKPOINT_SUBJECT,
            msgspec.json.encode(checkpoint),
            headers=headers,
            timeout_s=PUBLISH_TIMEOUT_S,
        )
