"""The event store in memory: the PostgreSQL store's twin, for a deterministic simulation.

Same semantics as ``postgres.PostgresEventStore`` and ``append_events`` (0001/0004 SQL), checked
by the one contract suite both pass (``tests/contract/test_event_store_contract.py``, ADR
0090): gapless positions in commit order, the hash chain, optimistic concurrency, idempotency
claims, the spend and policy fences (ADR 0073), append only, one lease holder at a time.

Deterministic: no wall clock and no randomness inside. The only time it needs, when a claim
was made (for ``prune_claims``), comes from the ``now_ms`` it is given, which a simulation
binds to its virtual clock. Each operation yields to the event loop once before it acts, as a
round trip to a database would, so a scheduler can interleave callers; an append is then
atomic, as one statement is.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import asyncpg
import msgspec

from services.eventstore.announcements import Announcements
from services.eventstore.chain import verify_chain
from services.eventstore.hashing import GENESIS_HASH, chain_hash
from services.eventstore.order_events import ORDER_ENDINGS, REISSUABLE_ORDERS
from services.eventstore.port import (
    LEASE_NAMES,
    AppendFence,
    ChainReport,
    ClaimConflict,
    ConcurrencyConflict,
    EventStore,
    IdempotencyClaim,
    NewEvent,
    StalePolicy,
    StaleSpend,
    StoredEvent,
    check_prune_bounds,
)

_decode_obj = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder()
# What ``open_orders_between`` treats as orders and their ends (as its SQL does, ADR 0249).
_ORDERS: Final = frozenset(REISSUABLE_ORDERS)
_ORDER_ENDINGS: Final = frozenset(ORDER_ENDINGS)


@dataclass(frozen=True, slots=True)
class _Row:
    """One event as a row: payload and metadata as stored text, decoded afresh per read (a
    reader that changes what it got changes nothing in the log)."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    payload: bytes
    metadata: bytes
    recorded_at_ms: int
    prev_hash: bytes
    hash: bytes

    def event(self) -> StoredEvent:
        return StoredEvent(
            position=self.position,
            event_id=self.event_id,
            stream_id=self.stream_id,
            stream_version=self.stream_version,
            type=self.type,
            schema_version=self.schema_version,
            payload=_decode_obj.decode(self.payload),
            metadata=_decode_obj.decode(self.metadata),
            recorded_at_ms=self.recorded_at_ms,
            prev_hash=self.prev_hash,
            hash=self.hash,
        )


@dataclass(slots=True)
class _Claim:
    claim: IdempotencyClaim
    created_at_ms: int


class InMemoryLease:
    """A lease on one name of an ``InMemoryEventStore``; ``lose`` on the store ends its
    session as a dropped connection would."""

    def __init__(self, store: InMemoryEventStore, name: str) -> None:
        self._store = store
        self._name = name
        self._locked = False
        self._lost = False
        self._closed = False
        self._listening = False
        self._announcements = Announcements()

    def _check_session(self) -> None:
        if self._lost or self._closed:
            # What asyncpg raises for a statement on a closed connection.
            raise asyncpg.InterfaceError("the lease's session is closed")

    async def acquire(self) -> bool:
        await asyncio.sleep(0)
        self._check_session()
        self._store._sessions.add(self)
        if not self._locked:
            holder = self._store._lease_holders.get(self._name)
            if holder is None or holder is self:
                self._store._lease_holders[self._name] = self
                self._locked = True
        return self._locked

    @property
    def held(self) -> bool:
        return self._locked and not self._lost and not self._closed

    async def listen(self, callback: Callable[[int | None], None]) -> None:
        self._announcements.listen(callback)
        await self._ensure_listening()

    async def wait_commit(self, *, after_position: int) -> int | None:
        await self._ensure_listening()
        return await self._announcements.wait_after(after_position)

    async def _ensure_listening(self) -> None:
        if not self._listening:
            await asyncio.sleep(0)
            self._check_session()
            self._store._sessions.add(self)
            self._listening = True

    def _announce(self, position: int) -> None:
        if self._listening and not self._lost and not self._closed:
            self._announcements.announce(position)

    def _end_session(self, *, lost: bool) -> None:
        if self._store._lease_holders.get(self._name) is self:
            del self._store._lease_holders[self._name]
        self._store._sessions.discard(self)
        self._locked = False
        self._listening = False
        if lost:
            self._lost = True
        else:
            self._closed = True

    async def release(self) -> None:
        self._end_session(lost=False)


class InMemoryEventStore:
    def __init__(self, *, now_ms: Callable[[], int] = lambda: 0) -> None:
        self._now_ms = now_ms
        self._rows: list[_Row] = []  # position p is self._rows[p - 1]
        self._streams: dict[str, list[_Row]] = {}
        self._event_ids: set[str] = set()
        self._versions: set[tuple[str, int]] = set()  # the unique (stream, version) index
        self._head_hash = GENESIS_HASH
        self._claims: dict[tuple[str, str], _Claim] = {}
        self._spend_fences: dict[str, int] = {}
        self._checkpoints: dict[str, int] = {}
        self._lease_holders: dict[str, InMemoryLease] = {}
        self._sessions: set[InMemoryLease] = set()
        self.closed = False

    async def _round_trip(self) -> None:
        await asyncio.sleep(0)
        if self.closed:
            raise asyncpg.InterfaceError("the store is closed")

    # -- writing --------------------------------------------------------------------------

    async def append(
        self,
        events: Sequence[NewEvent],
        claims: Sequence[IdempotencyClaim] = (),
        fence: AppendFence | None = None,
    ) -> int | None:
        if not events and not claims:
            return None
        await self._round_trip()
        # Everything is checked before anything is written: a refused batch leaves no trace,
        # as the rolled-back transaction does.
        keys = [(c.caller_id, c.idempotency_key) for c in claims]
        if len(set(keys)) < len(keys) or any(k in self._claims for k in keys):
            raise ClaimConflict()
        rows = self._rows_for(events, fence) if events else []
        now_ms = self._now_ms()
        for key, claim in sorted(zip(keys, claims, strict=True), key=lambda kc: kc[0]):
            self._claims[key] = _Claim(claim, now_ms)
        if not rows:
            return None
        for row in rows:
            self._rows.append(row)
            self._streams.setdefault(row.stream_id, []).append(row)
            self._event_ids.add(row.event_id)
            self._versions.add((row.stream_id, row.stream_version))
        self._head_hash = rows[-1].hash
        last = rows[-1].position
        if fence is not None:
            for caller in fence.callers:
                self._spend_fences[caller] = last
        # Delivered on the event loop after the commit, as PostgreSQL delivers a NOTIFY.
        loop = asyncio.get_running_loop()
        for lease in list(self._sessions):
            loop.call_soon(lease._announce, last)
        return rows[0].position

    def _rows_for(self, events: Sequence[NewEvent], fence: AppendFence | None) -> list[_Row]:
        """The rows ``events`` become, or the refusal ``append_events`` raises, in its order."""
        fence = fence or AppendFence()
        if fence.policy_stream is not None and any(
            row.stream_version > fence.policy_version
            for row in self._streams.get(fence.policy_stream, ())
        ):
            raise StalePolicy()
        stale = sum(
            1
            for caller, known in zip(fence.callers, fence.known_positions, strict=False)
            if self._spend_fences.get(caller, known) > known
        )
        if stale:
            raise StaleSpend()
        rows: list[_Row] = []
        taken_versions: set[tuple[str, int]] = set()
        taken_ids: set[str] = set()
        prev = self._head_hash
        position = len(self._rows)
        for event in events:
            if event.stream_version < 1:
                raise asyncpg.CheckViolationError("stream_version must be at least 1")
            event_id = str(uuid.UUID(event.event_id))  # as the uuid column stores it
            version_key = (event.stream_id, event.stream_version)
            if (
                version_key in taken_versions
                or event_id in taken_ids
                or event_id in self._event_ids
                or version_key in self._versions
            ):
                raise ConcurrencyConflict(f"{event.stream_id} version {event.stream_version}")
            taken_versions.add(version_key)
            taken_ids.add(event_id)
            position += 1
            event_hash = chain_hash(prev, position, event.body)
            rows.append(
                _Row(
                    position=position,
                    event_id=event_id,
                    stream_id=event.stream_id,
                    stream_version=event.stream_version,
                    type=event.type,
                    schema_version=event.schema_version,
                    payload=_as_jsonb(event.payload),
                    metadata=_as_jsonb(event.metadata),
                    recorded_at_ms=event.recorded_at_ms,
                    prev_hash=prev,
                    hash=event_hash,
                )
            )
            prev = event_hash
        return rows

    async def prune_claims(self, *, horizon_s: int, rows_max: int) -> int:
        check_prune_bounds(horizon_s, rows_max)
        await self._round_trip()
        cutoff_ms = self._now_ms() - horizon_s * 1000
        old = sorted(
            (c.created_at_ms, key) for key, c in self._claims.items() if c.created_at_ms < cutoff_ms
        )[:rows_max]
        for _, key in old:
            del self._claims[key]
        return len(old)

    async def set_checkpoint(self, name: str, position: int) -> None:
        await self.set_checkpoints({name: position})

    async def set_checkpoints(self, positions: Mapping[str, int]) -> None:
        await self._round_trip()
        self._checkpoints.update(positions)

    # -- reading --------------------------------------------------------------------------

    async def read_stream(self, stream_id: str) -> list[StoredEvent]:
        await self._round_trip()
        return [row.event() for row in _by_version(self._streams.get(stream_id, []))]

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[StoredEvent]]:
        await self._round_trip()
        return {
            stream_id: [row.event() for row in _by_version(self._streams[stream_id])]
            for stream_id in sorted(set(stream_ids))
            if stream_id in self._streams
        }

    async def stream_version(self, stream_id: str) -> int:
        await self._round_trip()
        return max((row.stream_version for row in self._streams.get(stream_id, ())), default=0)

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        await self._round_trip()
        return {
            stream_id: max(
                (row.stream_version for row in self._streams.get(stream_id, ())), default=0
            )
            for stream_id in stream_ids
        }

    async def read_all(self, *, after_position: int, limit: int) -> list[StoredEvent]:
        await self._round_trip()
        start = max(after_position, 0)
        return [row.event() for row in self._rows[start : start + max(limit, 0)]]

    async def read_from(
        self,
        *,
        after_position: int,
        through_position: int,
        types: Collection[str],
        limit: int,
    ) -> list[StoredEvent]:
        await self._round_trip()
        wanted = frozenset(types)
        found: list[StoredEvent] = []
        for row in self._rows[max(after_position, 0) : max(through_position, 0)]:
            if len(found) >= limit:
                break
            if row.type in wanted:
                found.append(row.event())
        return found

    async def pages(
        self, *, after_position: int = 0, page: int = 5000
    ) -> AsyncIterator[list[StoredEvent]]:
        while batch := await self.read_all(after_position=after_position, limit=page):
            after_position = batch[-1].position
            yield batch

    async def scan_recent(
        self,
        *,
        types: Collection[str],
        recorded_since_ms: int,
        visit: Callable[[StoredEvent], None],
    ) -> int:
        await self._round_trip()
        wanted = frozenset(types)
        snapshot = list(self._rows)  # appends while ``visit`` runs are not part of it
        for row in snapshot:
            if row.type in wanted and row.recorded_at_ms >= recorded_since_ms:
                visit(row.event())
        return len(snapshot)

    async def head_position(self) -> int:
        await self._round_trip()
        return len(self._rows)

    async def hash_at(self, position: int) -> bytes | None:
        if position == 0:
            return GENESIS_HASH
        await self._round_trip()
        if 1 <= position <= len(self._rows):
            return self._rows[position - 1].hash
        return None

    async def find_claim(self, caller_id: str, idempotency_key: str) -> IdempotencyClaim | None:
        await self._round_trip()
        found = self._claims.get((caller_id, idempotency_key))
        return found.claim if found else None

    async def find_claims(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], IdempotencyClaim]:
        if not keys:
            return {}
        await self._round_trip()
        return {key: self._claims[key].claim for key in keys if key in self._claims}

    async def get_checkpoint(self, name: str) -> int:
        await self._round_trip()
        return self._checkpoints.get(name, 0)

    async def get_checkpoints(self, names: Collection[str]) -> dict[str, int]:
        await self._round_trip()
        return {name: self._checkpoints[name] for name in names if name in self._checkpoints}

    async def open_orders_between(
        self, *, after_position: int, through_position: int, limit: int
    ) -> list[tuple[str, int]]:
        await self._round_trip()
        found: list[tuple[str, int]] = []
        for row in self._rows[max(after_position, 0) : max(through_position, 0)]:
            if len(found) >= limit:
                break
            if row.type in _ORDERS and not any(
                other.type in _ORDER_ENDINGS for other in self._streams[row.stream_id]
            ):
                found.append((row.stream_id, row.position))
        return found

    async def last_position_of(self, event_type: str, *, through_position: int) -> int:
        await self._round_trip()
        for row in reversed(self._rows[: max(through_position, 0)]):
            if row.type == event_type:
                return row.position
        return 0

    async def owners_of(self, stream_ids: Collection[str]) -> dict[str, str | None]:
        await self._round_trip()
        owners: dict[str, str | None] = {}
        for stream_id in stream_ids:
            first = next(
                (r for r in self._streams.get(stream_id, ()) if r.stream_version == 1), None
            )
            if first is not None and first.type == "IntentReceived":
                caller = _decode_obj.decode(first.payload).get("caller")
                owners[stream_id] = (
                    _json_text(caller.get("id")) if isinstance(caller, dict) else None
                )
        return owners

    async def deadline_streams(
        self, *, after_position: int = 0, through_position: int | None = None
    ) -> list[str]:
        await self._round_trip()
        found: dict[str, None] = {}
        for row in self._rows:
            if row.position <= after_position or (
                through_position is not None and row.position > through_position
            ):
                continue
            if row.type == "IntentApprovalRequested" or (
                row.type == "IntentReceived"
                and _decode_obj.decode(row.payload).get("deadline_at_ms") is not None
            ):
                found[row.stream_id] = None
        return list(found)

    async def verify_chain(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> ChainReport:
        return await verify_chain(
            self.hash_at, self.read_all, after_position=after_position, limit=limit
        )

    # -- leases and life ------------------------------------------------------------------

    def lease(self, name: str) -> InMemoryLease:
        if name not in LEASE_NAMES:
            raise ValueError(f"no lease named {name!r}")
        return InMemoryLease(self, name)

    def lose_leases(self) -> int:
        """End every lease's session as a lost connection would (a simulated database restart
        or network cut); returns how many sessions ended. Their holders see ``held`` false."""
        sessions = list(self._sessions)
        for lease in sessions:
            lease._end_session(lost=True)
        return len(sessions)

    async def close(self) -> None:
        self.lose_leases()
        self.closed = True


def _by_version(rows: list[_Row]) -> list[_Row]:
    return sorted(rows, key=lambda row: row.stream_version)


def _as_jsonb(document: bytes) -> bytes:
    """What a jsonb column gives back for ``document``: keys deduplicated (the last wins) and
    ordered shorter first, then bytewise; and no U+0000, which jsonb cannot hold."""
    value = msgspec.json.decode(document)
    if not isinstance(value, dict):
        raise asyncpg.DataError("an event's payload and metadata are JSON objects")
    return _encode.encode(_jsonb_order(value))


def _jsonb_order(value: Any) -> Any:
    if isinstance(value, dict):
        ordered = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {_jsonb_text(k): _jsonb_order(value[k]) for k in ordered}
    if isinstance(value, list):
        return [_jsonb_order(v) for v in value]
    if isinstance(value, str):
        return _jsonb_text(value)
    return value


def _jsonb_text(text: str) -> str:
    if "\x00" in text:
        raise asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence")
    return text


def _json_text(value: Any) -> str | None:
    """``->>``: a string as itself, JSON null as NULL, anything else as its JSON text."""
    if value is None or isinstance(value, str):
        return value
    return _encode.encode(value).decode()


if TYPE_CHECKING:  # mypy checks the twin against the whole port
    _CONFORMS: EventStore = InMemoryEventStore()
