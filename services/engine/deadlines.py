"""Expire intents whose deadline passed before they reached the network.

The scheduler keeps a bounded heap of (deadline, intent) for intents still before dispatch. It
is fed by the writer loop's commits (the committed-batches channel, ADR 0095) and, at start,
by scanning the log for intents that carry a deadline. When a deadline passes it sends
``ExpirePaymentIntent`` through the normal command path, so expiry is an ordinary, recorded,
idempotent command.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Mapping

import structlog

from schemas.commands import ExpirePaymentIntent
from schemas.errors import Unavailable
from schemas.replies import CommandRejected
from services.domain.intent import PaymentIntent, fold
from services.domain.intent.state import effective_deadline
from services.domain.intent.transitions import PRE_DISPATCH_STATUSES
from services.engine.clock import Clock
from services.engine.committed import CommittedBatch, CommittedBatches
from services.engine.event_codec import to_domain
from services.engine.processor import CommandEnvelope, CommandProcessor
from services.eventstore.postgres import PostgresEventStore

log = structlog.get_logger("corridor.deadlines")

# Pending deadlines held in memory; beyond this the farthest are dropped and picked up by the
# next start-up scan (a restart is the only way to lose them, and the scan finds them again).
DEADLINES_MAX = 100_000
# An expiry the store could not commit is sent again this much later (on the engine's clock).
EXPIRY_RETRY_MS = 1_000
_SCAN_SQL = """
SELECT DISTINCT stream_id FROM events
 WHERE (type = 'IntentReceived' AND payload->>'deadline_at_ms' IS NOT NULL)
    OR type = 'IntentApprovalRequested'
"""


def deadline_of(state: PaymentIntent) -> int | None:
    if state.status not in PRE_DISPATCH_STATUSES:
        return None
    return effective_deadline(state)


class DeadlineScheduler:
    def __init__(
        self,
        processor: CommandProcessor,
        clock: Clock,
        committed: CommittedBatches | None = None,
    ) -> None:
        self._processor = processor
        if committed is not None:
            committed.subscribe("deadlines", self._committed)
        self._clock = clock
        self._heap: list[tuple[int, str]] = []
        self._wake = asyncio.Event()
        self.expired_sent = 0

    def _committed(self, batch: CommittedBatch) -> None:
        self.observe(batch.states)

    def observe(self, states: Mapping[str, PaymentIntent | None]) -> None:
        for intent_id, state in states.items():
            deadline = deadline_of(state) if state is not None else None
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, intent_id))
                if len(self._heap) > DEADLINES_MAX:
                    self._heap = heapq.nsmallest(DEADLINES_MAX, self._heap)
                self._wake.set()

    def poke(self) -> None:
        """Re-check now (a simulated clock moved)."""
        self._wake.set()

    async def load(self, store: PostgresEventStore) -> None:
        async with store.pool.acquire() as conn:
            rows = await conn.fetch(_SCAN_SQL)
        ids = [r["stream_id"] for r in rows]
        for start in range(0, len(ids), 1000):
            streams = await store.read_streams(ids[start : start + 1000])
            states: dict[str, PaymentIntent | None] = {}
            for intent_id, history in streams.items():
                states[intent_id] = fold(to_domain(e) for e in history)
            self.observe(states)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now_ms = self._clock.now_ms()
            due = []
            while self._heap and self._heap[0][0] <= now_ms:
                due.append(heapq.heappop(self._heap)[1])
            for intent_id in dict.fromkeys(due):
                reply = await self._processor.execute(
                    CommandEnvelope(command=ExpirePaymentIntent(intent_id=intent_id))
                )
                self.expired_sent += 1
                log.info("deadline_reached", intent_id=intent_id, ok=reply.ok)
                if isinstance(reply, CommandRejected) and reply.error.code == Unavailable.code:
                    # Not committed (PostgreSQL away: services/failures.py): due again soon,
                    # or the intent would wait for the next start-up scan.
                    heapq.heappush(self._heap, (now_ms + EXPIRY_RETRY_MS, intent_id))
            wait_s = (self._heap[0][0] - now_ms) / 1000 if self._heap else 60.0
            # A timer until the next deadline, woken early when a nearer one arrives.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(wait_s, 60.0)))
