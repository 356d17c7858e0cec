"""The relay's checkpoint in the store: the position published through, and the event
stream's sequence of that position's message, saved and read together."""

from __future__ import annotations

from services.eventstore.port import EventStore

CHECKPOINT = "relay:jetstream"
# Saved with the checkpoint, in the same statement: the event stream's sequence of the message
# at the checkpoint's position (0: not known). At the next start that one message proves that
# the stream still holds everything the checkpoint says was published (ADR 0062).
CHECKPOINT_SEQ = "relay:jetstream:evt_seq"


async def load_checkpoint(store: EventStore) -> tuple[int, int]:
    """The relay's checkpoint and the sequence saved with it, read together."""
    saved = await store.get_checkpoints([CHECKPOINT, CHECKPOINT_SEQ])
    return saved.get(CHECKPOINT, 0), saved.get(CHECKPOINT_SEQ, 0)


async def save_checkpoint(store: EventStore, position: int, evt_seq: int) -> None:
    """The checkpoint and its sequence in one statement: they never disagree."""
    assert position >= 0 and evt_seq >= 0
    await store.set_checkpoints({CHECKPOINT: position, CHECKPOINT_SEQ: evt_seq})


async def reset_checkpoint(store: EventStore, position: int) -> None:
    """Make the relay re-publish everything after ``position`` (operators' recovery tool)."""
    await save_checkpoint(store, position, 0)
