"""The event store port: an append-only log with per-stream optimistic concurrency.

Everything the engine, the relay and the tools ask of the log is a named operation here (ADR
0090). Two adapters implement it: ``postgres.PostgresEventStore`` (production) and
``memory.InMemoryEventStore`` (the deterministic twin a simulation runs on). One contract
suite, ``tests/contract/test_event_store_contract.py``, runs the same bodies against both, so
the twin cannot drift from the store it stands in for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, Final, Protocol

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


# The only lease so far: one outbox relay publishes at a time, the others stand by.
RELAY_LEASE: Final = "relay"
LEASE_NAMES: Final = frozenset({RELAY_LEASE})
# ``prune_claims`` bounds (as the SQL function checks them): a horizon below an hour is a unit
# mistake, and one call deletes a bounded batch so it never holds many row locks.
PRUNE_HORIZON_S_MIN: Final = 3600
PRUNE_ROWS_MAX: Final = 100_000


def check_prune_bounds(horizon_s: int, rows_max: int) -> None:
    if horizon_s < PRUNE_HORIZON_S_MIN or not 1 <= rows_max <= PRUNE_ROWS_MAX:
        raise ValueError(
            f"prune_claims: horizon at least {PRUNE_HORIZON_S_MIN} s, 1 to {PRUNE_ROWS_MAX} rows"
        )


class Lease(Protocol):
    """A named lease on the store: at most one holder at a time, held until released or its
    session with the store is lost (PostgreSQL: an advisory lock on its own connection).

    It also hears the store's commit announcements (PostgreSQL: LISTEN), each carrying the
    committed batch's last position, or ``None`` when the announcement was not a position."""

    async def acquire(self) -> bool:
        """Try once; ``True`` if this lease is held now. A lease whose session was lost
        raises: take a new one from the store."""
        ...

    @property
    def held(self) -> bool:
        """``False`` once released or once the session holding it was lost."""
        ...

    async def listen(self, callback: Callable[[int | None], None]) -> None:
        """Call ``callback`` with every commit announced from now on (on the event loop)."""
        ...

    async def wait_commit(self, *, after_position: int) -> int | None:
        """Wait until a commit beyond ``after_position`` is announced; its position, or
        ``None`` for an announcement that named none. Bound it with ``asyncio.wait_for``."""
        ...

    async def release(self) -> None:
        """Give the lease up and end its session (idempotent)."""
        ...


class EventStore(Protocol):
    async def append(
        self,
        events: Sequence[NewEvent],
        claims: Sequence[IdempotencyClaim] = (),
        fence: AppendFence | None = None,
    ) -> int | None:
        """Append atomically; return the first global position (None if no events).

        Positions are gapless and become visible in commit order (ADR 0001); each event's hash
        chains to the previous one (``hashing.chain_hash``). All or nothing, checked in this
        order: ``ClaimConflict`` if any claim exists already (or twice in the batch);
        ``StalePolicy``/``StaleSpend`` when ``fence`` no longer holds (ADR 0073);
        ``ConcurrencyConflict`` if a (stream, version) or an event id exists already. Claims
        alone (no events) are stored and ``None`` is returned."""
        ...

    async def read_stream(self, stream_id: str) -> list[StoredEvent]:
        """The stream's events in version order ([] for no such stream)."""
        ...

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[StoredEvent]]:
        """Many streams in one round trip; streams with no events are absent."""
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last version, 0 if it has none."""
        ...

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Each stream's last version, 0 for one with none, in one round trip (the read side
        checks many cached states at once, ``services/engine/version_probe.py``)."""
        ...

    async def read_all(self, *, after_position: int, limit: int) -> list[StoredEvent]:
        """At most ``limit`` events after ``after_position``, in position order."""
        ...

    async def read_from(
        self,
        *,
        after_position: int,
        through_position: int,
        types: Collection[str],
        limit: int,
    ) -> list[StoredEvent]:
        """At most ``limit`` events of ``types`` in positions ``(after, through]``, in order."""
        ...

    def pages(
        self, *, after_position: int = 0, page: int = 5000
    ) -> AsyncIterator[list[StoredEvent]]:
        """The log in position order, ``page`` events at a time."""
        ...

    async def scan_recent(
        self,
        *,
        types: Collection[str],
        recorded_since_ms: int,
        visit: Callable[[StoredEvent], None],
    ) -> int:
        """Call ``visit`` with every event of ``types`` recorded at or after
        ``recorded_since_ms``, in position order, from one snapshot of the log; returns that
        snapshot's head position (every event at or below it was seen)."""
        ...

    async def head_position(self) -> int:
        """The last committed position (0 for an empty log)."""
        ...

    async def hash_at(self, position: int) -> bytes | None:
        """The chain hash of the event at ``position`` (the genesis hash for 0; ``None`` for
        no such position)."""
        ...

    async def find_claim(self, caller_id: str, idempotency_key: str) -> IdempotencyClaim | None: ...

    async def find_claims(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], IdempotencyClaim]:
        """The claims of those (caller, key) pairs that have one."""
        ...

    async def prune_claims(self, *, horizon_s: int, rows_max: int) -> int:
        """Delete up to ``rows_max`` claims older than ``horizon_s``, oldest first; returns how
        many (ADR 0079). ``ValueError`` outside ``check_prune_bounds``."""
        ...

    async def get_checkpoint(self, name: str) -> int:
        """A consumer's checkpoint (0 if it has none)."""
        ...

    async def get_checkpoints(self, names: Collection[str]) -> dict[str, int]:
        """Several checkpoints read together; names never saved are absent."""
        ...

    async def set_checkpoint(self, name: str, position: int) -> None: ...

    async def set_checkpoints(self, positions: Mapping[str, int]) -> None:
        """Several checkpoints saved in one statement: they never disagree."""
        ...

    async def open_orders_between(
        self, *, after_position: int, through_position: int, limit: int
    ) -> list[tuple[str, int]]:
        """(stream, position) of each work order (``order_events.REISSUABLE_ORDERS``) in
        ``(after, through]`` whose stream has none of ``order_events.ORDER_ENDINGS``
        (anywhere in it), oldest first, at most ``limit``."""
        ...

    async def last_position_of(self, event_type: str, *, through_position: int) -> int:
        """The position of the newest ``event_type`` event at or before ``through_position``
        (0: none)."""
        ...

    async def owners_of(self, stream_ids: Collection[str]) -> dict[str, str | None]:
        """For each of ``stream_ids`` whose version 1 is ``IntentReceived``: its
        ``payload.caller.id`` (``None`` if it names none). Other streams are absent."""
        ...

    async def deadline_streams(
        self, *, after_position: int = 0, through_position: int | None = None
    ) -> list[str]:
        """Every stream with an ``IntentReceived`` that carries a ``deadline_at_ms`` or with an
        ``IntentApprovalRequested``, each once, in no particular order; only such events in
        positions ``(after_position, through_position]`` count (``None``: to the head)."""
        ...

    async def verify_chain(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> ChainReport:
        """Recompute every hash from the stored columns; report the first mismatch."""
        ...

    def lease(self, name: str) -> Lease:
        """A new, unheld lease on ``name`` (one of ``LEASE_NAMES``, else ``ValueError``)."""
        ...

    async def close(self) -> None: ...
