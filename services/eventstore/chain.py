"""Verifying the hash chain from what a store reads back: one procedure for every adapter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.eventstore.hashing import chain_hash, event_body
from services.eventstore.port import ChainReport, StoredEvent

# Events read per round trip while verifying.
VERIFY_PAGE: int = 5000


async def verify_chain(
    hash_at: Callable[[int], Awaitable[bytes | None]],
    read_all: Callable[..., Awaitable[list[StoredEvent]]],
    *,
    after_position: int = 0,
    limit: int | None = None,
) -> ChainReport:
    """Recompute every hash from the stored columns; report the first mismatch."""
    checked = 0
    last = after_position
    prev = await hash_at(after_position)
    while limit is None or checked < limit:
        batch = await read_all(
            after_position=last,
            limit=VERIFY_PAGE if limit is None else min(VERIFY_PAGE, limit - checked),
        )
        if not batch:
            break
        for event in batch:
            problem = check_link(event, prev, expected_position=last + 1)
            if problem:
                return ChainReport(
                    checked=checked, last_position=last, ok=False,
                    first_bad_position=event.position, problem=problem,
                )  # fmt: skip
            prev = event.hash
            last = event.position
            checked += 1
    return ChainReport(checked=checked, last_position=last, ok=True)


def check_link(event: StoredEvent, prev: bytes | None, *, expected_position: int) -> str | None:
    if event.position != expected_position:
        return f"position gap: expected {expected_position}, found {event.position}"
    if prev is not None and event.prev_hash != prev:
        return "prev_hash does not match the previous event's hash"
    body = event_body(
        event_id=event.event_id,
        stream_id=event.stream_id,
        stream_version=event.stream_version,
        type=event.type,
        schema_version=event.schema_version,
        recorded_at_ms=event.recorded_at_ms,
        payload=event.payload,
        metadata=event.metadata,
    )
    if chain_hash(event.prev_hash, event.position, body) != event.hash:
        return "hash does not match the event's contents"
    return None
