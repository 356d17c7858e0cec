"""The one in-process channel for committed batches (ADR 0095).

Three writers in an engine process append to the log: the writer loop (commands), the
checkpointer and the dead-letter desk. Whoever wants to know what this process just committed
(the outbox relay, the checkpointer's counter, the deadline scheduler, the spend book) subscribes
here; ``bootstrap()`` builds one channel and hands it to each constructor.

Delivery and back-pressure, as they were with the hook lists this replaces:

- ``publish`` runs every subscriber at once, in subscription order, on the writer's own task,
  right after the commit. Nothing is queued between a writer and a subscriber, so the channel
  holds no batch: its bound is ``SUBSCRIBERS_MAX`` subscribers, each called once per batch.
- The writer never waits for a subscriber. A subscriber is a plain function that returns at
  once; whatever it keeps for later it bounds itself, and drops when full (the relay keeps at
  most ``HANDOFF_EVENTS_MAX`` events, then drops them and reads the log instead). The log is the
  truth: a hand-over only saves a read, so a dropped one costs a read and never an event.
- A subscriber that raises is logged and skipped: the batch is committed, and a failing
  observer must not turn that into an error reply or stop the next subscriber.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import structlog

from services.domain.intent import PaymentIntent
from services.eventstore.port import NewEvent

log = structlog.get_logger("corridor.committed")

# Subscribers of one process: the relay, the checkpointer, the deadline scheduler, the spend
# book, and a demo or test observer. More is a wiring mistake, not load.
SUBSCRIBERS_MAX: Final = 16


class Writer(enum.StrEnum):
    """Who in this process appended the batch."""

    COMMANDS = "commands"  # the writer loop: intents, policy, agent keys
    CHECKPOINTS = "checkpoints"
    DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    writer: Writer
    first_position: int  # of ``events[0]``; the rest follow without a gap
    events: Sequence[NewEvent]
    # The new state of every intent the batch changed (``None``: no such stream); empty for the
    # writers that append no intent events.
    states: Mapping[str, PaymentIntent | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.events, "only a batch that appended something is published"
        assert self.first_position >= 1


Subscriber = Callable[[CommittedBatch], None]


class CommittedBatches:
    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Subscriber]] = []
        self._writing = 0
        self.published = 0

    def subscribe(self, name: str, subscriber: Subscriber) -> None:
        assert len(self._subscribers) < SUBSCRIBERS_MAX, "a wiring loop, not a subscriber"
        assert all(n != name for n, _ in self._subscribers), f"{name} subscribed twice"
        self._subscribers.append((name, subscriber))

    def publish(self, batch: CommittedBatch) -> None:
        """Hand a committed batch to every subscriber; never raises, never waits."""
        self.published += 1
        for name, subscriber in self._subscribers:
            try:
                subscriber(batch)
            except Exception:
                log.exception("commit_observer_failed", subscriber=name, writer=batch.writer)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around an append on its way to the database: a NOTIFY the relay hears meanwhile
        most likely announces that very commit, about to be published here."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1

    def busy(self) -> bool:
        return self._writing > 0
