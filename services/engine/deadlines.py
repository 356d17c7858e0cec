"""Expire intents whose deadline passed before they reached the network.

The scheduler keeps a bounded heap of (deadline, intent) for intents still before dispatch. It
is fed by the writer loop's commits (the committed-batches channel, ADR 0095) and, at start,
by scanning the log for intents that carry a deadline. When a deadline passes it sends
``ExpirePaymentIntent`` through the normal command path, so expiry is an ordinary, recorded,
idempotent command.

With several engines on one log (ADR 0073) each also adopts the others' intents: it scans the
log written since its last scan, and expires an intent it did not accept a grace period after
its deadline, in case the engine that accepted it has died (ADR 0097). An expiry is idempotent
in the aggregate (an intent already expired, or past dispatch, yields no event), so two engines
expiring the same intent cost one command and change nothing.
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
from services.eventstore.port import EventStore

log = structlog.get_logger("corridor.deadlines")

# Pending deadlines held in memory; beyond this the farthest are dropped and picked up by the
# next start-up scan (a restart is the only way to lose them, and the scan finds them again).
DEADLINES_MAX = 100_000
# An expiry the store could not commit is sent again this much later (on the engine's clock).
EXPIRY_RETRY_MS = 1_000
# How often (engine clock) the log written since the last scan is scanned for other engines'
# intents: an intent whose engine died is expired at most this much later than the grace.
ADOPT_EVERY_MS = 5_000
# An intent another engine accepted is expired this long after its deadline: that engine,
# if alive, expires it first, so the live engines do not all race for the same stream.
ADOPTED_GRACE_MS = 5_000
# Intents read back per scan step (one read_streams call).
SCAN_READ_MAX = 1000


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
        *,
        adopt_every_ms: int = ADOPT_EVERY_MS,
        adopted_grace_ms: int = ADOPTED_GRACE_MS,
    ) -> None:
        self._processor = processor
        if committed is not None:
            committed.subscribe("deadlines", self._committed)
        self._clock = clock
        self._heap: list[tuple[int, str]] = []
        # The intents in the heap: a scan does not adopt what this engine already follows.
        self._tracked: set[str] = set()
        self._wake = asyncio.Event()
        self.expired_sent = 0
        self._adopt_every_ms = adopt_every_ms
        self._adopted_grace_ms = adopted_grace_ms
        self._store: EventStore | None = None
        self._scanned_through = 0  # the log is scanned through this position
        self._scanned_at_ms = 0
        self.adopted = 0  # intents found by a scan after start (other engines' intents)

    def _committed(self, batch: CommittedBatch) -> None:
        self.observe(batch.states)

    def observe(self, states: Mapping[str, PaymentIntent | None], *, grace_ms: int = 0) -> None:
        for intent_id, state in states.items():
            deadline = deadline_of(state) if state is not None else None
            if deadline is not None:
                self._push(deadline + grace_ms, intent_id)
                self._wake.set()

    def _push(self, due_ms: int, intent_id: str) -> None:
        heapq.heappush(self._heap, (due_ms, intent_id))
        self._tracked.add(intent_id)
        if len(self._heap) > DEADLINES_MAX:
            self._heap = heapq.nsmallest(DEADLINES_MAX, self._heap)
            self._tracked = {intent_id for _, intent_id in self._heap}

    def poke(self) -> None:
        """Re-check now (a simulated clock moved)."""
        self._wake.set()

    async def load(self, store: EventStore) -> None:
        self._store = store
        self._scanned_through = await store.head_position()
        self._scanned_at_ms = self._clock.now_ms()
        ids = await store.deadline_streams(through_position=self._scanned_through)
        await self._observe_streams(store, ids, grace_ms=0)

    async def _adopt(self, store: EventStore) -> None:
        """Follow the intents with deadlines other engines wrote since the last scan."""
        head = await store.head_position()
        found = await store.deadline_streams(
            after_position=self._scanned_through, through_position=head
        )
        ids = [stream_id for stream_id in found if stream_id not in self._tracked]
        before = len(self._tracked)
        await self._observe_streams(store, ids, grace_ms=self._adopted_grace_ms)
        self.adopted += len(self._tracked) - before
        self._scanned_through = head

    async def _observe_streams(self, store: EventStore, ids: list[str], *, grace_ms: int) -> None:
        for start in range(0, len(ids), SCAN_READ_MAX):
            streams = await store.read_streams(ids[start : start + SCAN_READ_MAX])
            states: dict[str, PaymentIntent | None] = {}
            for intent_id, history in streams.items():
                states[intent_id] = fold(to_domain(e) for e in history)
            self.observe(states, grace_ms=grace_ms)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now_ms = self._clock.now_ms()
            if self._store is not None and now_ms - self._scanned_at_ms >= self._adopt_every_ms:
                self._scanned_at_ms = now_ms
                try:
                    await self._adopt(self._store)
                except Exception as exc:  # the next scan covers the same positions again
                    log.warning("deadline_scan_failed", error=type(exc).__name__)
            due = []
            while self._heap and self._heap[0][0] <= now_ms:
                due.append(heapq.heappop(self._heap)[1])
                self._tracked.discard(due[-1])
            for intent_id in dict.fromkeys(due):
                reply = await self._processor.execute(
                    CommandEnvelope(command=ExpirePaymentIntent(intent_id=intent_id))
                )
                self.expired_sent += 1
                log.info("deadline_reached", intent_id=intent_id, ok=reply.ok)
                if isinstance(reply, CommandRejected) and reply.error.code == Unavailable.code:
                    # Not committed (PostgreSQL away: services/failures.py): due again soon,
                    # or the intent would wait for the next start-up scan.
                    self._push(now_ms + EXPIRY_RETRY_MS, intent_id)
            wait_s = (self._heap[0][0] - now_ms) / 1000 if self._heap else 60.0
            wait_s = min(wait_s, self._adopt_every_ms / 1000)
            # A timer until the next deadline, woken early when a nearer one arrives.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(wait_s, 60.0)))
