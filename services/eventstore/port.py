"""The event store port: an append-only log with per-stream optimistic concurrency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    payload: bytes  # canonical JSON (services.eventstore.hashing)
    metadata: bytes  # canonical JSON
    recorded_at_ms: int
    body: bytes  # what the hash covers (hashing.event_body)


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at_ms: int
    prev_hash: bytes
    hash: bytes


class IdempotencyClaim(msgspec.Struct, frozen=True, kw_only=True):
    caller_id: str
    idempotency_key: str
    intent_id: str
    fingerprint: str


class AppendFence(msgspec.Struct, frozen=True, kw_only=True):
    """What a batch was judged against, checked by the append (ADR 0073).

    ``callers[i]``: a caller whose spend the batch judged or changed; ``known_positions[i]``:
    the log position up to which the engine had folded that caller's spend. ``policy_version``:
    the version of ``policy_stream`` the batch was judged with (``None``: not checked)."""

    callers: tuple[str, ...] = ()
    known_positions: tuple[int, ...] = ()
    policy_stream: str | None = None
    policy_version: int = 0


class ChainReport(msgspec.Struct, frozen=True, kw_only=True):
    checked: int
    last_position: int
    ok: bool
    first_bad_position: int | None = None
    problem: str | None = None


class ConcurrencyConflict(Exception):
    """Another writer appended to one of the streams first. Retry against fresh state."""


class ClaimConflict(Exception):
    """An idempotency key in the batch was claimed by a concurrent writer."""


class StaleView(Exception):
    """Another engine changed what this batch was judged against. Catch up, judge again."""


class StaleSpend(StaleView):
    """A caller's spend changed since this engine last folded it (another engine's append)."""


class StalePolicy(StaleView):
    """The policy stream moved since this engine loaded it (an activation elsewhere)."""


class EventStore(Protocol):
    async def append(
        self,
        events: Sequence[NewEvent],
        claims: Sequence[IdempotencyClaim] = (),
        fence: AppendFence | None = None,
    ) -> int | None:
        """Append atomically; return the first global position (None if no events).
        Raises ``StaleSpend``/``StalePolicy`` when ``fence`` no longer holds."""
        ...

    async def read_stream(self, stream_id: str) -> list[StoredEvent]: ...

    async def read_all(self, *, after_position: int, limit: int) -> list[StoredEvent]: ...

    async def head_position(self) -> int: ...

    async def find_claim(self, caller_id: str, idempotency_key: str) -> IdempotencyClaim | None: ...

    async def get_checkpoint(self, name: str) -> int: ...

    async def set_checkpoint(self, name: str, position: int) -> None: ...

    async def verify_chain(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> ChainReport: ...
