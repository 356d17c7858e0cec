"""The committed-batches channel (ADR 0095): every subscriber hears every commit, in order, at
once; none can fail the writer or another subscriber; the writer's "busy" is what the relay
waits on; and each listener takes only the writers it listens to."""

from __future__ import annotations

import pytest

from schemas.events import LogCheckpointSigned
from schemas.records import EventMetadata
from services.engine.clock import SystemClock
from services.engine.committed import SUBSCRIBERS_MAX, CommittedBatch, CommittedBatches, Writer
from services.engine.event_codec import to_new_events
from services.engine.spend_book import SpendBook

META = EventMetadata(correlation_id="c", causation_id="k", actor="test")


def _batch(writer: Writer, first: int, n: int = 2) -> CommittedBatch:
    events = [
        LogCheckpointSigned(
            checkpoint_id=f"ckpt-{i}", position=i, hash="00", key_id="k", signature="s",
            signed_at_ms=1,
        )
        for i in range(n)
    ]  # fmt: skip
    return CommittedBatch(writer, first, to_new_events("s", 1, events, META, 1))


def test_every_subscriber_hears_every_batch_in_subscription_order() -> None:
    channel = CommittedBatches()
    heard: list[tuple[str, int]] = []
    channel.subscribe("a", lambda b: heard.append(("a", b.first_position)))
    channel.subscribe("b", lambda b: heard.append(("b", b.first_position)))
    channel.publish(_batch(Writer.COMMANDS, 1))
    channel.publish(_batch(Writer.CHECKPOINTS, 3))
    assert heard == [("a", 1), ("b", 1), ("a", 3), ("b", 3)]
    assert channel.published == 2


def test_a_failing_subscriber_neither_fails_the_commit_nor_silences_the_next() -> None:
    channel = CommittedBatches()
    heard = []

    def broken(_: CommittedBatch) -> None:
        raise RuntimeError("a bug in an observer")

    channel.subscribe("broken", broken)
    channel.subscribe("after", heard.append)
    channel.publish(_batch(Writer.COMMANDS, 1))  # does not raise
    assert len(heard) == 1


def test_busy_only_while_an_append_is_on_its_way() -> None:
    channel = CommittedBatches()
    assert not channel.busy()
    with channel.writing():
        assert channel.busy()
        with channel.writing():
            assert channel.busy()
        assert channel.busy()
    assert not channel.busy()
    with pytest.raises(RuntimeError), channel.writing():
        raise RuntimeError("the append failed")
    assert not channel.busy()


def test_subscribers_are_bounded_and_named_once() -> None:
    channel = CommittedBatches()
    channel.subscribe("relay", lambda b: None)
    with pytest.raises(AssertionError):
        channel.subscribe("relay", lambda b: None)
    for i in range(SUBSCRIBERS_MAX - 1):
        channel.subscribe(f"s{i}", lambda b: None)
    with pytest.raises(AssertionError):
        channel.subscribe("one-too-many", lambda b: None)


def test_an_empty_batch_is_never_published() -> None:
    with pytest.raises(AssertionError):
        CommittedBatch(Writer.COMMANDS, 1, [])


def test_the_spend_book_skips_only_the_checkpointers_positions() -> None:
    # The spend book needs no store to hear a batch (``store`` is only read by load/catch-up).
    book = SpendBook(store=None, clock=SystemClock())  # type: ignore[arg-type]
    book.note(_batch(Writer.COMMANDS, 1))  # its own: booked by the writer loop itself
    book.note(_batch(Writer.DEAD_LETTERS, 1))  # not noted today: the next catch-up reads it
    assert book.sync.seen_through == 0
    book.note(_batch(Writer.CHECKPOINTS, 1, n=3))
    assert book.sync.seen_through == 3
