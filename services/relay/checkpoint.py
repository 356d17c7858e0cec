"""The relay's checkpoint in PostgreSQL: the position published through, and the event
stream's sequence of that position's message, saved and read together."""

from __future__ import annotations

from services.eventstore.postgres import PostgresEventStore

CHECKPOINT = "relay:jetstream"
# Saved with the checkpoint, in the same statement: the event stream's sequence of the message
# at the checkpoint's position (0: not known). At the next start that one message proves that
# the stream still holds everything the checkpoint says was published (ADR 0062).
CHECKPOINT_SEQ = "relay:jetstream:evt_seq"


async def load_checkpoint(store: PostgresEventStore) -> tuple[int, int]:
    """The relay's checkpoint and the sequence saved with it, read together."""
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT name, position FROM checkpoints WHERE name = ANY($1::text[])",
            [CHECKPOINT, CHECKPOINT_SEQ],
        )
    saved = {row["name"]: int(row["position"]) for row in rows}
    return saved.get(CHECKPOINT, 0), saved.get(CHECKPOINT_SEQ, 0)


async def save_checkpoint(store: PostgresEventStore, position: int, evt_seq: int) -> None:
    """The checkpoint and its sequence in one statement: they never disagree."""
    assert position >= 0 and evt_seq >= 0
    async with store.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO checkpoints (name, position) VALUES ($1, $2), ($3, $4)"
            " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
            CHECKPOINT, position, CHECKPOINT_SEQ, evt_seq,
        )  # fmt: skip


async def reset_checkpoint(store: PostgresEventStore, position: int) -> None:
    """Make the relay re-publish everything after ``position`` (operators' recovery tool)."""
    await save_checkpoint(store, position, 0)
