"""This engine's spend book, kept in step with the appends of the other engines (ADR 0073).

Every engine judges spend limits against its own ``SpendTracker``. The log is the truth, and
other engines append to it too, so the book is current only up to a position:

- ``seen_through``: every spend event at or below it is folded (at start, the snapshot the
  book was loaded from; after a catch-up, the head it read);
- this engine's own appends above it, folded as they were decided; per caller, the end of the
  last own batch that touched it.

So the position up to which this engine knows a caller's spend is the larger of the two
(``known``). Each append sends that per caller it touches, and PostgreSQL refuses the batch
(``StaleSpend``) if another engine moved the caller's fence beyond it since; the engine then
rolls the batch back, ``catch_up``s and judges again.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Final

from services.domain.policy.spend_tracker import SpendTracker, by_agent_key
from services.engine.event_codec import to_domain
from services.eventstore.port import EventStore

# The events that change or judge a caller's spend (services/domain/policy/spend_fold.py).
SPEND_EVENT_TYPES: Final = frozenset(
    {
        "IntentReceived", "IntentPolicyChecked", "IntentDispatched", "IntentSettled",
        "IntentRejected", "IntentFailed", "IntentCancelled", "IntentExpired",
    }
)  # fmt: skip
# Rows per round trip while catching up: bounds memory after a long time behind.
CATCH_UP_PAGE: Final = 5_000
# Own appends remembered above ``seen_through`` (while another writer leaves gaps below them);
# past this, the next batch catches up first, which moves ``seen_through`` to the head.
OWN_RANGES_MAX: Final = 1_024


class SpendSync:
    def __init__(
        self,
        tracker: SpendTracker | None = None,
        key_tracker: SpendTracker | None = None,
        *,
        seen_through: int = 0,
    ) -> None:
        self.tracker = tracker or SpendTracker()
        # Agent keys' windows (ADR 0068), folded from the same events at the same positions.
        self.key_tracker = key_tracker or SpendTracker(account=by_agent_key)
        self.seen_through = seen_through
        # Own appends above ``seen_through`` as sorted, disjoint (first, last) ranges.
        self._own: list[tuple[int, int]] = []
        self._own_last: dict[str, int] = {}
        # Set when a fence failed or too many own ranges piled up: catch up before judging.
        self.stale = False
        self.catch_ups = 0

    def reset(
        self, tracker: SpendTracker, key_tracker: SpendTracker | None = None, *, seen_through: int
    ) -> None:
        self.tracker = tracker
        self.key_tracker = key_tracker or SpendTracker(account=by_agent_key)
        self.seen_through = seen_through
        self._own.clear()
        self._own_last.clear()
        self.stale = False

    def known(self, caller_id: str) -> int:
        return max(self.seen_through, self._own_last.get(caller_id, 0))

    def fence(self, callers: Iterable[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        ordered = tuple(sorted(set(callers)))
        return ordered, tuple(self.known(c) for c in ordered)

    def appended(self, first_position: int, count: int, callers: Iterable[str] = ()) -> None:
        """This process appended ``count`` events from ``first_position`` (the writer loop,
        with the callers its batch fenced; or the checkpointer, with none)."""
        if count <= 0:
            return
        last = first_position + count - 1
        for caller in callers:
            self._own_last[caller] = last
        bisect.insort(self._own, (first_position, last))
        while self._own and self._own[0][0] <= self.seen_through + 1:
            self.seen_through = max(self.seen_through, self._own.pop(0)[1])
        if len(self._own) > OWN_RANGES_MAX:
            self.stale = True

    def _own_position(self, position: int) -> bool:
        at = bisect.bisect_right(self._own, (position, float("inf"))) - 1
        return at >= 0 and self._own[at][0] <= position <= self._own[at][1]

    async def catch_up(self, store: EventStore) -> int:
        """Fold every other writer's spend events up to the head; returns how many."""
        folded = 0
        head = await store.head_position()
        after = self.seen_through
        while after < head:
            rows = await store.read_from(
                after_position=after, through_position=head, types=SPEND_EVENT_TYPES,
                limit=CATCH_UP_PAGE,
            )  # fmt: skip
            for stored in rows:
                if not self._own_position(stored.position):  # else folded when decided
                    event = [to_domain(stored)]
                    self.tracker.apply(stored.stream_id, event, at_ms=stored.recorded_at_ms)
                    self.key_tracker.apply(stored.stream_id, event, at_ms=stored.recorded_at_ms)
                    folded += 1
                # Moved per event: a catch-up cut short (the database went away) resumes
                # after what it folded, and never folds an event twice.
                self.seen_through = max(self.seen_through, stored.position)
            if len(rows) < CATCH_UP_PAGE:
                break
            after = rows[-1].position
        self.seen_through = max(self.seen_through, head)
        self._own = [r for r in self._own if r[1] > self.seen_through]
        self._own_last = {c: p for c, p in self._own_last.items() if p > self.seen_through}
        self.stale = False
        self.catch_ups += 1
        return folded
