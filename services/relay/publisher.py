"""The relay's sends: a batch of events to the event stream (and its work orders to the
dispatch stream), fenced by the streams' expected sequences (ADR 0013), and re-issued orders.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.js import JetStreamContext

from services.bus import subjects
from services.bus.fenced_publisher import (
    ATOMIC_BATCH_MSGS_MAX,
    ERR_ATOMIC_DISABLED,
    ERR_WRONG_LAST_MSG_ID,
    ERR_WRONG_LAST_SEQUENCE,
    OutgoingMessage,
    PublishRefused,
)
from services.bus.port import Bus, FencedPublishing
from services.engine.event_codec import subject_for
from services.eventstore.port import StoredEvent
from services.relay.cursor import Cursor
from services.relay.outgoing import PUBLISH_ACK_TIMEOUT_S, Acked, Outgoing, count_new

log = structlog.get_logger("corridor.relay")

# Messages for one stream from which an atomic batch is cheaper than single publishes
# (measured: an atomic batch costs nats-server ~1 ms of CPU, a pipelined publish ~0.05 ms).
ATOMIC_BATCH_MSGS_MIN = 24


class Publisher:
    def __init__(
        self, js: JetStreamContext | None, bus: Bus, fenced: FencedPublishing | None
    ) -> None:
        # Plain publishes are nats-py's pipelined publish_async where there is a JetStream
        # context; without one (the in-memory bus) the port's publish, one task each in
        # order (ADR 0098).
        self._js = js
        self._bus = bus
        # Publishes fenced by the streams' expected sequences, in atomic batches when large
        # (ADR 0013). Without it every event is a plain JetStream publish.
        self._fenced = fenced
        self._atomic_ok = True  # False once the server refuses atomic batches
        # Each stream's last sequence as this relay expects it; None when unknown.
        self._expected_seq: dict[str, int] | None = None
        self.reissued = 0  # work orders re-issued (ADR 0075)

    def forget_sequences(self) -> None:
        """The streams' sequences are no longer known (a new session, or a publish that does
        not move them where expected)."""
        self._expected_seq = None

    async def publish(
        self, batch: list[Outgoing], cursor: Cursor, settle: Callable[[], Awaitable[None]]
    ) -> asyncio.Future[Acked]:
        """Send the batch; returns a future of what JetStream stored (the number of new events
        and the event stream's sequence of the last one), which fails if JetStream refuses or
        does not acknowledge the batch in time. ``settle`` waits for every earlier batch."""
        fenced = self._fenced
        if fenced is None or cursor.may_be_published(batch[0].position):
            self._expected_seq = None  # duplicates do not move a stream's sequence
            return await self._publish_each(batch, cursor)
        if self._expected_seq is None:
            # Every earlier publish must have landed before the streams' sequences are read.
            await settle()
            self._expected_seq = {
                stream: (await self._bus.stream_state(stream)).last_seq
                for stream in (subjects.EVT_STREAM, subjects.DISPATCH_STREAM)
            }
        acks: list[asyncio.Future[int]] = []
        for stream, messages in messages_by_stream(batch, cursor).items():
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
        return asyncio.ensure_future(self._count_fenced(acks, Acked(len(batch), evt_seq)))

    async def _count_fenced(self, acks: list[asyncio.Future[int]], acked: Acked) -> Acked:
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

    async def _publish_each(self, batch: list[Outgoing], cursor: Cursor) -> asyncio.Future[Acked]:
        """One JetStream publish per message, pipelined (bounded by the JetStream context's
        in-flight limit): duplicates are dropped by message id, one by one."""
        futures = []
        for messages in messages_by_stream(batch, cursor).values():
            for message in messages:
                futures.append(
                    await self._publish_async(message.subject, message.body, message.headers)
                )
        return asyncio.ensure_future(count_new(futures))

    async def _publish_async(
        self, subject: str, body: bytes, headers: dict[str, str] | None
    ) -> asyncio.Future[Any]:
        if self._js is not None:
            return await self._js.publish_async(subject, body, headers=headers)
        return asyncio.ensure_future(
            self._bus.publish(subject, body, headers=headers, timeout_s=PUBLISH_ACK_TIMEOUT_S)
        )

    async def publish_reissues(
        self,
        queue: collections.deque[StoredEvent],
        *,
        batch_max: int,
        settled: Callable[[Awaitable[object]], Awaitable[object]],
    ) -> None:
        """Publish the queued orders to the dispatch stream, as the log holds them (signed),
        under new message ids so JetStream's duplicate window does not drop them. Marked
        replayed: an executor asks the engine before paying, as for every order (ADR 0063).
        Each chunk leaves the queue once acknowledged (``settled`` waits for that)."""
        self._expected_seq = None  # they move the dispatch stream's sequence
        token = str(time.time_ns())
        while queue:
            chunk = [queue[i] for i in range(min(len(queue), batch_max))]
            acks = []
            for event in chunk:
                out = Outgoing.stored(event)
                assert out.order_subject is not None, "only work orders are re-issued"
                headers = {
                    **out.headers(),
                    subjects.HDR_REPLAYED: "true",
                    subjects.HDR_REISSUED: token,
                    subjects.HDR_MSG_ID: f"{event.event_id}:reissue:{token}",
                }
                acks.append(await self._publish_async(out.order_subject, out.body, headers))
            await settled(asyncio.wait_for(asyncio.gather(*acks), timeout=PUBLISH_ACK_TIMEOUT_S))
            for _ in chunk:
                queue.popleft()
            self.reissued += len(chunk)
            log.info("relay_reissued_orders", orders=len(chunk))


def messages_by_stream(batch: list[Outgoing], cursor: Cursor) -> dict[str, list[OutgoingMessage]]:
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
            if cursor.is_replay(event.position):
                headers = {**headers, subjects.HDR_REPLAYED: "true"}
            by_stream[subjects.DISPATCH_STREAM].append(
                OutgoingMessage(event.order_subject, event.body, headers)
            )
    return by_stream
