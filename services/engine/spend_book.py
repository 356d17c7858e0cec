"""The spend book the writer loop judges limits by: loaded from the log at start, pruned to the
longest window, kept in step with other engines (``spend_sync.py``, ADR 0073), and rolled back
with a batch that did not commit.

Spend reserved or settled per caller is threaded through every decision, so two intents racing
for the last budget are judged one after the other. It also books agent keys' own windows (ADR
0068) beside the policy's: a key belongs to one agent caller, so the caller's fence covers the
key's window too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from schemas.policy_document import WINDOW_S_MAX
from services.domain.intent import PaymentIntent
from services.domain.policy.spend_tracker import SpendTracker, by_agent_key
from services.engine.clock import Clock
from services.engine.committed import CommittedBatch, Writer
from services.engine.event_codec import to_domain
from services.engine.spend_sync import SPEND_EVENT_TYPES, SpendSync
from services.eventstore.port import EventStore, StoredEvent

# Pruning walks every caller's entries: once a minute is enough to keep the book bounded.
PRUNE_EVERY_MS: Final = 60_000


class SpendBook:
    def __init__(self, store: EventStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.sync = SpendSync()
        self._pruned_at_ms = 0

    @property
    def tracker(self) -> SpendTracker:
        return self.sync.tracker

    @property
    def key_tracker(self) -> SpendTracker:
        return self.sync.key_tracker

    async def load(self) -> int:
        """Rebuild the spend book from the log's recent events; returns events folded."""
        horizon_ms = self._clock.now_ms() - WINDOW_S_MAX * 1000
        tracker = SpendTracker()
        key_tracker = SpendTracker(account=by_agent_key)
        folded = 0

        def fold_spend(stored: StoredEvent) -> None:
            nonlocal folded
            event = [to_domain(stored)]
            tracker.apply(stored.stream_id, event, at_ms=stored.recorded_at_ms)
            key_tracker.apply(stored.stream_id, event, at_ms=stored.recorded_at_ms)
            folded += 1

        # One snapshot: every spend event at or below ``head`` is folded.
        head = await self._store.scan_recent(
            types=SPEND_EVENT_TYPES, recorded_since_ms=horizon_ms, visit=fold_spend
        )
        self.sync.reset(tracker, key_tracker, seen_through=head)
        return folded

    def prune(self) -> None:
        # Windows never exceed WINDOW_S_MAX whatever the active document says, so pruning to
        # that horizon cannot forget spend a future policy version might still count.
        now_ms = self._clock.now_ms()
        if now_ms - self._pruned_at_ms >= PRUNE_EVERY_MS:
            self._pruned_at_ms = now_ms
            self.sync.tracker.prune(now_ms=now_ms, horizon_ms=WINDOW_S_MAX * 1000)
            self.sync.key_tracker.prune(now_ms=now_ms, horizon_ms=WINDOW_S_MAX * 1000)

    async def catch_up_if(self, streams: Iterable[tuple[str, PaymentIntent | None]]) -> None:
        """Catch up with the log when a fence failed, or when the batch holds an open intent
        whose spend this engine never folded: another engine received it after this one's
        view (ADR 0073), and its reservation must be folded before an outcome settles or
        releases it."""
        if self.sync.stale or any(
            state is not None and not state.is_terminal and not self.sync.tracker.knows(stream_id)
            for stream_id, state in streams
        ):
            await self.sync.catch_up(self._store)

    def begin(self) -> None:
        self.sync.tracker.begin()
        self.sync.key_tracker.begin()

    def commit(self) -> None:
        self.sync.tracker.commit()
        self.sync.key_tracker.commit()

    def rollback(self) -> None:
        self.sync.tracker.rollback()
        self.sync.key_tracker.rollback()

    def fence(self, callers: Iterable[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        return self.sync.fence(callers)

    def appended(self, first_position: int, count: int, callers: Iterable[str]) -> None:
        """The writer loop committed ``count`` events judging or changing ``callers``."""
        self.sync.appended(first_position, count, callers)

    def note(self, batch: CommittedBatch) -> None:
        """A committed-batches subscriber: another writer of this process (the checkpointer)
        appended; those positions hold no spend, so the view need not catch up over them."""
        if batch.writer is Writer.CHECKPOINTS:
            self.sync.appended(batch.first_position, len(batch.events))
