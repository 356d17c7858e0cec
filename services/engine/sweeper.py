"""Re-issue work orders the network went quiet about, and give every intent a bounded life.

Every ``interval_s``, while this engine's relay leads (ADR 0075):

- **Re-issue.** An attempt on the wire, or ``succeeded`` without proof, whose intent saw no
  event for ``reissue_after_s`` has no live attempt: a working executor reports at least every
  ``track_s_max`` plus a redelivery delay. Its order is re-published from the log through the
  relay, signed as it was logged, at most once per ``reissue_after_s``. An executor asks the
  engine before paying any order (ADR 0063), so a re-issued order can never pay twice.
- **Escalate.** An attempt dispatched more than ``life_s`` ago gets an exception item
  (``EscalatePaymentIntent``, recorded once per attempt as ``IntentEscalated`` with the
  evidence so far). Nothing is released: only the node's proof or an operator's recorded
  decision ends the intent.

Candidates come from a cursor over the log's work orders of intents not yet ended (by
position, so orders other engines dispatched are found too), up to the head the log had when
the smaller bound last passed. Each sweep re-reads the candidates' streams and forgets those
that ended.
"""

from __future__ import annotations

import asyncio
import collections

import structlog

from schemas.commands import EscalatePaymentIntent
from services.engine.clock import Clock
from services.engine.open_attempts import OpenAttempt, dispatched_between, open_attempts
from services.engine.processor import CommandEnvelope, CommandProcessor
from services.eventstore.port import EventStore
from services.failures import is_transient
from services.relay.outbox import OutboxRelay

log = structlog.get_logger("corridor.sweeper")

# Intents watched at once. Beyond this the cursor waits (nothing is skipped): each sweep
# forgets the intents that ended, which makes room.
WATCHED_MAX = 100_000
# Work orders taken from the log per query.
SCAN_PAGE_ORDERS = 5_000


class Sweeper:
    def __init__(
        self,
        store: EventStore,
        processor: CommandProcessor,
        relay: OutboxRelay,
        clock: Clock,
        *,
        interval_s: float,
        reissue_after_s: int,
        life_s: int,
    ) -> None:
        assert interval_s > 0 and reissue_after_s >= 1 and life_s >= 1
        self._store = store
        self._processor = processor
        self._relay = relay
        self._clock = clock
        self._interval_s = interval_s
        self._reissue_after_ms = reissue_after_s * 1000
        self._life_s = life_s
        self._cursor = 0  # the log is taken up to here
        # (time, head) of each sweep, until the smaller bound has passed since.
        self._heads: collections.deque[tuple[int, int]] = collections.deque()
        self._start_head: int | None = None
        self._old_head = 0  # the newest head the smaller bound has passed since
        self._watched: dict[str, None] = {}  # intents whose attempt may still need us
        self._reissued_at_ms: dict[str, int] = {}
        self.reissued = 0
        self.escalated = 0

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                # Tried again next round either way (the log still holds what it looks for);
                # a definite failure is a fault to see, and must not end the sweeper
                # (services/failures.py, as for the checkpointer).
                if is_transient(exc):
                    log.warning("sweep_unavailable", error=type(exc).__name__)
                else:
                    log.error("sweep_failed", error=type(exc).__name__, exc_info=exc)
            await asyncio.sleep(self._interval_s)  # the sweep's timer, not synchronisation

    async def sweep(self) -> None:
        """One round: take new candidates from the log, re-issue and escalate."""
        if not self._relay.leader.is_set():
            return  # only the leading relay publishes; its engine sweeps
        now_ms = self._clock.now_ms()
        await self._take_candidates(now_ms)
        attempts = await open_attempts(self._store, list(self._watched))
        still_open = {a.intent_id for a in attempts}
        for intent_id in [i for i in self._watched if i not in still_open]:
            del self._watched[intent_id]
            self._reissued_at_ms.pop(intent_id, None)
        quiet = [a for a in attempts if self._quiet(a, now_ms)]
        if quiet:
            taken = self._relay.reissue([a.order for a in quiet])
            for attempt in quiet[:taken]:
                self._reissued_at_ms[attempt.intent_id] = now_ms
                log.info("work_order_reissued", intent_id=attempt.intent_id,
                         attempt=attempt.attempt, state=attempt.status)  # fmt: skip
            self.reissued += taken
        for attempt in attempts:
            if self._outlived(attempt, now_ms):
                await self._escalate(attempt)

    def _quiet(self, attempt: OpenAttempt, now_ms: int) -> bool:
        last_ms = max(attempt.last_event_at_ms, self._reissued_at_ms.get(attempt.intent_id, 0))
        return now_ms - last_ms >= self._reissue_after_ms

    def _outlived(self, attempt: OpenAttempt, now_ms: int) -> bool:
        state = attempt.state
        return (
            state is not None  # rebalances, receives, channel ops: re-issued, not escalated
            and state.escalated_attempt != state.attempt
            and now_ms - attempt.dispatched_at_ms >= self._life_s * 1000
        )

    async def _escalate(self, attempt: OpenAttempt) -> None:
        command = EscalatePaymentIntent(
            intent_id=attempt.intent_id,
            on_wire_since_ms=attempt.dispatched_at_ms,
            life_s=self._life_s,
        )
        reply = await self._processor.execute(CommandEnvelope(command=command))
        self.escalated += 1
        log.warning("intent_escalated", intent_id=attempt.intent_id, ok=reply.ok,
                    attempt=attempt.attempt, state=attempt.status)  # fmt: skip

    async def _take_candidates(self, now_ms: int) -> None:
        """Watch the open intents among the work orders up to the log's head as it was when
        the smaller bound last passed: younger orders need nothing yet. At start the whole log
        up to the head is taken (each intent's own times decide)."""
        head = await self._store.head_position()
        self._heads.append((now_ms, head))
        if self._start_head is None:
            self._start_head = head
        older_than_ms = now_ms - min(self._reissue_after_ms, self._life_s * 1000)
        bound = self._start_head
        while self._heads and self._heads[0][0] <= older_than_ms:
            bound = max(bound, self._heads.popleft()[1])
            self._old_head = bound
        bound = max(bound, self._old_head)
        while self._cursor < bound:
            room = WATCHED_MAX - len(self._watched)
            if room <= 0:
                log.error("sweeper_watch_full", watched=len(self._watched), cursor=self._cursor)
                return
            page = await dispatched_between(
                self._store, after_position=self._cursor, through_position=bound,
                limit=min(SCAN_PAGE_ORDERS, room),
            )  # fmt: skip
            for order in page:
                self._watched[order.intent_id] = None
            self._cursor = page[-1].position if page else bound
