"""The event store on PostgreSQL via asyncpg. One statement per append (see 0001_event_log.sql)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, Final

import asyncpg
import msgspec

from services.eventstore.announcements import Announcements, parse_position
from services.eventstore.chain import verify_chain
from services.eventstore.hashing import GENESIS_HASH
from services.eventstore.migrate import migrate
from services.eventstore.order_events import ORDER_ENDINGS, REISSUABLE_ORDERS
from services.eventstore.port import (
    LEASE_NAMES,
    RELAY_LEASE,
    AppendFence,
    ChainReport,
    ClaimConflict,
    ConcurrencyConflict,
    IdempotencyClaim,
    NewEvent,
    StalePolicy,
    StaleSpend,
    StoredEvent,
    check_prune_bounds,
)
from services.eventstore.roles import URL_ERRORS, unusable_url

# Event ids travel as text: building a uuid.UUID per event cost more than the cast.
_APPEND = (
    "SELECT append_events($1, $2, $3::text[]::uuid[], $4, $5, $6::text[]::jsonb[],"
    " $7::text[]::jsonb[], $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
)
_NO_FENCE = AppendFence()
COLUMNS = """position, event_id::text, stream_id, stream_version, type, schema_version,
    payload::text, metadata::text,
    (extract(epoch from recorded_at) * 1000)::bigint AS recorded_at_ms, prev_hash, hash"""
_decode_obj = msgspec.json.Decoder(dict[str, Any])
# The channel append_events announces each commit's last position on (0001_event_log.sql).
COMMIT_CHANNEL: Final = "corridor_events"
# Each lease is an advisory lock; the relay's key is the one it always used ("rela"), so a
# relay from before the port and one after still exclude each other during an upgrade.
ADVISORY_LOCK_KEYS: Final = {RELAY_LEASE: 0x72656C61}
assert set(ADVISORY_LOCK_KEYS) == LEASE_NAMES


def row_to_event(record: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        position=record["position"],
        event_id=record["event_id"],
        stream_id=record["stream_id"],
        stream_version=record["stream_version"],
        type=record["type"],
        schema_version=record["schema_version"],
        payload=_decode_obj.decode(record["payload"]),
        metadata=_decode_obj.decode(record["metadata"]),
        recorded_at_ms=record["recorded_at_ms"],
        prev_hash=bytes(record["prev_hash"]),
        hash=bytes(record["hash"]),
    )


async def _keep_session_as_is(conn: asyncpg.Connection[Any]) -> None:
    """Pooled connections hold no session state (no LISTEN, advisory lock or SET: a lease
    uses its own connection for those), so asyncpg's default reset, a round trip of
    RESET ALL / UNLISTEN * / unlock-all on every release, is skipped. It was 19 % of the
    engine's CPU in `corridor bench`."""


class PostgresLease:
    """An advisory lock held on a connection of its own (pooled ones keep no session state),
    which also LISTENs for commits. Losing the connection loses the lock."""

    def __init__(self, dsn: str, key: int) -> None:
        self._dsn = dsn
        self._key = key
        self._conn: asyncpg.Connection[Any] | None = None
        self._locked = False
        self._listening = False
        self._announcements = Announcements()

    async def _connection(self) -> asyncpg.Connection[Any]:
        if self._conn is None:
            try:
                self._conn = await asyncpg.connect(self._dsn)
            except URL_ERRORS as exc:
                raise unusable_url(self._dsn, exc) from None
        return self._conn

    async def acquire(self) -> bool:
        if self.held:
            return True  # asked again (the lock is re-entrant): held once, not twice
        conn = await self._connection()  # a lost one raises on the query, as it did before
        self._locked = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key))
        return self._locked

    @property
    def held(self) -> bool:
        return self._locked and self._conn is not None and not self._conn.is_closed()

    async def listen(self, callback: Callable[[int | None], None]) -> None:
        self._announcements.listen(callback)
        await self._ensure_listening()

    async def wait_commit(self, *, after_position: int) -> int | None:
        await self._ensure_listening()
        return await self._announcements.wait_after(after_position)

    async def _ensure_listening(self) -> None:
        if not self._listening:
            conn = await self._connection()
            await conn.add_listener(COMMIT_CHANNEL, self._on_notify)
            self._listening = True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self._announcements.announce(parse_position(payload))

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        self._locked = False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


class PostgresEventStore:
    def __init__(self, pool: asyncpg.Pool, dsn: str | None = None) -> None:
        self._pool = pool
        # Leases connect on their own (``PostgresLease``); a store built on a bare pool has none.
        self._dsn = dsn

    @classmethod
    async def connect(cls, dsn: str, *, pool_max: int = 10) -> PostgresEventStore:
        """A pool on ``dsn``: the engine's role (``corridor_engine``), or the auditor's for
        read-only commands. Pending migrations are applied only if the role may (the owner's,
        or a superuser's before ADR 0064); otherwise ``MigrationsPending``."""
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=pool_max, reset=_keep_session_as_is
            )
        except URL_ERRORS as exc:
            # asyncpg may quote part of a malformed URL, and so part of its password.
            raise unusable_url(dsn, exc) from None
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, dsn)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    async def append(
        self,
        events: Sequence[NewEvent],
        claims: Sequence[IdempotencyClaim] = (),
        fence: AppendFence | None = None,
    ) -> int | None:
        if not events and not claims:
            return None
        fence = fence or _NO_FENCE
        try:
            async with self._pool.acquire() as conn:
                position: int | None = await conn.fetchval(
                    _APPEND,
                    [e.stream_id for e in events],
                    [e.stream_version for e in events],
                    [e.event_id for e in events],
                    [e.type for e in events],
                    [e.schema_version for e in events],
                    [e.payload.decode() for e in events],
                    [e.metadata.decode() for e in events],
                    [e.recorded_at_ms for e in events],
                    [e.body for e in events],
                    [c.caller_id for c in claims],
                    [c.idempotency_key for c in claims],
                    [c.intent_id for c in claims],
                    [c.fingerprint for c in claims],
                    list(fence.callers),
                    list(fence.known_positions),
                    fence.policy_stream,
                    fence.policy_version,
                )
        except asyncpg.UniqueViolationError as exc:
            # Event ids derive from (stream, version), so either key means the same race.
            if exc.constraint_name in ("events_stream_version_key", "events_event_id_key"):
                raise ConcurrencyConflict(str(exc.detail or exc)) from None
            raise
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == "CR001":
                raise ClaimConflict() from None
            if exc.sqlstate == "CR002":
                raise StaleSpend() from None
            if exc.sqlstate == "CR003":
                raise StalePolicy() from None
            raise
        return position

    async def prune_claims(self, *, horizon_s: int, rows_max: int) -> int:
        """Delete up to ``rows_max`` idempotency claims older than ``horizon_s`` (ADR 0079)."""
        check_prune_bounds(horizon_s, rows_max)
        async with self._pool.acquire() as conn:
            removed: int = await conn.fetchval(
                "SELECT prune_idempotency_keys($1, $2)", horizon_s, rows_max
            )
        return removed

    async def read_stream(self, stream_id: str) -> list[StoredEvent]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version",
                stream_id,
            )
        return [row_to_event(r) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last version, 0 if it has none (one probe of the unique index)."""
        async with self._pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT max(stream_version) FROM events WHERE stream_id = $1", stream_id
            )
        return int(value or 0)

    async def stream_versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT stream_id, max(stream_version) AS version FROM events"
                " WHERE stream_id = ANY($1::text[]) GROUP BY stream_id",
                list(stream_ids),
            )
        found = {row["stream_id"]: int(row["version"]) for row in rows}
        return {stream_id: found.get(stream_id, 0) for stream_id in stream_ids}

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[StoredEvent]]:
        """Many streams in one round trip (the intake loads a whole batch at once)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM events WHERE stream_id = ANY($1::text[])"
                " ORDER BY stream_id, stream_version",
                list(stream_ids),
            )
        out: dict[str, list[StoredEvent]] = {}
        for record in rows:
            event = row_to_event(record)
            out.setdefault(event.stream_id, []).append(event)
        return out

    async def read_all(self, *, after_position: int, limit: int) -> list[StoredEvent]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
        return [row_to_event(r) for r in rows]

    async def pages(
        self, *, after_position: int = 0, page: int = 5000
    ) -> AsyncIterator[list[StoredEvent]]:
        """The log in position order, ``page`` events at a time.

        The next page is requested before this one is handed out, so PostgreSQL reads and
        sends it (on its own core) while the caller works on this one.
        """
        pending = asyncio.ensure_future(self.read_all(after_position=after_position, limit=page))
        try:
            while True:
                batch = await pending
                if not batch:
                    return
                pending = asyncio.ensure_future(
                    self.read_all(after_position=batch[-1].position, limit=page)
                )
                await asyncio.sleep(0)  # let the request go out before the caller takes over
                yield batch
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

    async def head_position(self) -> int:
        async with self._pool.acquire() as conn:
            return int(await conn.fetchval("SELECT position FROM event_log_head"))

    async def find_claim(self, caller_id: str, idempotency_key: str) -> IdempotencyClaim | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT caller_id, idempotency_key, intent_id, fingerprint FROM idempotency_keys"
                " WHERE caller_id = $1 AND idempotency_key = $2",
                caller_id,
                idempotency_key,
            )
        return IdempotencyClaim(**dict(row)) if row else None

    async def find_claims(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], IdempotencyClaim]:
        if not keys:
            return {}
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT k.caller_id, k.idempotency_key, k.intent_id, k.fingerprint"
                " FROM idempotency_keys k"
                " JOIN unnest($1::text[], $2::text[]) AS q(c, i)"
                " ON k.caller_id = q.c AND k.idempotency_key = q.i",
                [c for c, _ in keys],
                [k for _, k in keys],
            )
        return {(r["caller_id"], r["idempotency_key"]): IdempotencyClaim(**dict(r)) for r in rows}

    async def hash_at(self, position: int) -> bytes | None:
        """The chain hash of the event at ``position`` (the genesis hash for 0)."""
        if position == 0:
            return GENESIS_HASH
        async with self._pool.acquire() as conn:
            value = await conn.fetchval("SELECT hash FROM events WHERE position = $1", position)
        return bytes(value) if value is not None else None

    async def get_checkpoint(self, name: str) -> int:
        async with self._pool.acquire() as conn:
            value = await conn.fetchval("SELECT position FROM checkpoints WHERE name = $1", name)
        return int(value or 0)

    async def set_checkpoint(self, name: str, position: int) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO checkpoints (name, position) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE"
                " SET position = EXCLUDED.position, updated_at = now()",
                name,
                position,
            )

    async def verify_chain(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> ChainReport:
        """Recompute every hash from the stored columns; report the first mismatch."""
        return await verify_chain(
            self.hash_at, self.read_all, after_position=after_position, limit=limit
        )

    async def read_from(
        self,
        *,
        after_position: int,
        through_position: int,
        types: Collection[str],
        limit: int,
    ) -> list[StoredEvent]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_READ_FROM_SQL, after_position, through_position,
                                    sorted(types), limit)  # fmt: skip
        return [row_to_event(r) for r in rows]

    async def scan_recent(
        self,
        *,
        types: Collection[str],
        recorded_since_ms: int,
        visit: Callable[[StoredEvent], None],
    ) -> int:
        # One snapshot: the head read here is exactly the last position the cursor can see
        # (positions become visible in commit order, ADR 0001).
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = int(await conn.fetchval("SELECT position FROM event_log_head"))
            async for record in conn.cursor(_RECENT_SQL, sorted(types), recorded_since_ms):
                visit(row_to_event(record))
        return head

    async def get_checkpoints(self, names: Collection[str]) -> dict[str, int]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT name, position FROM checkpoints WHERE name = ANY($1::text[])",
                list(names),
            )
        return {row["name"]: int(row["position"]) for row in rows}

    async def set_checkpoints(self, positions: Mapping[str, int]) -> None:
        if not positions:
            return
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO checkpoints (name, position)"
                " SELECT * FROM unnest($1::text[], $2::bigint[])"
                " ON CONFLICT (name) DO UPDATE"
                " SET position = EXCLUDED.position, updated_at = now()",
                list(positions), list(positions.values()),
            )  # fmt: skip

    async def open_orders_between(
        self, *, after_position: int, through_position: int, limit: int
    ) -> list[tuple[str, int]]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_OPEN_ORDERS_SQL, after_position, through_position, limit)
        return [(str(row["stream_id"]), int(row["position"])) for row in rows]

    async def last_position_of(self, event_type: str, *, through_position: int) -> int:
        async with self._pool.acquire() as conn:
            position = await conn.fetchval(
                "SELECT position FROM events WHERE position <= $1 AND type = $2"
                " ORDER BY position DESC LIMIT 1",
                through_position, event_type,
            )  # fmt: skip
        return int(position or 0)

    async def owners_of(self, stream_ids: Collection[str]) -> dict[str, str | None]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_OWNERS_SQL, list(stream_ids))
        return {row["stream_id"]: row["owner"] for row in rows}

    async def deadline_streams(
        self, *, after_position: int = 0, through_position: int | None = None
    ) -> list[str]:
        async with self._pool.acquire() as conn:
            if after_position == 0 and through_position is None:
                rows = await conn.fetch(_DEADLINE_STREAMS_SQL)
            else:
                through = (1 << 62) if through_position is None else through_position
                rows = await conn.fetch(_DEADLINE_STREAMS_BETWEEN_SQL, after_position, through)
        return [row["stream_id"] for row in rows]

    def lease(self, name: str) -> PostgresLease:
        if name not in ADVISORY_LOCK_KEYS:
            raise ValueError(f"no lease named {name!r}")
        assert self._dsn is not None, "a store made from a bare pool hands out no leases"
        return PostgresLease(self._dsn, ADVISORY_LOCK_KEYS[name])


def _quoted(names: tuple[str, ...]) -> str:
    """SQL literals of event type names (constants of ours, checked to be plain names)."""
    assert all(name.isidentifier() for name in names)
    return ", ".join(f"'{name}'" for name in names)


_READ_FROM_SQL: Final = (
    f"SELECT {COLUMNS} FROM events WHERE position > $1 AND position <= $2"
    " AND type = ANY($3::text[]) ORDER BY position LIMIT $4"
)
_RECENT_SQL: Final = (
    f"SELECT {COLUMNS} FROM events WHERE type = ANY($1::text[])"
    " AND recorded_at >= timestamptz 'epoch' + $2 * interval '1 millisecond'"
    " ORDER BY position"
)
# Work orders in a range of the log, oldest first, of intents not ended yet: the position range
# walks the primary key, the check for an ending event the (stream_id, stream_version) index,
# so intents settled long ago cost no read of their streams.
_OPEN_ORDERS_SQL: Final = f"""
SELECT d.stream_id, d.position FROM events d
 WHERE d.position > $1 AND d.position <= $2 AND d.type IN ({_quoted(REISSUABLE_ORDERS)})
   AND NOT EXISTS (SELECT 1 FROM events t WHERE t.stream_id = d.stream_id
                    AND t.type IN ({_quoted(ORDER_ENDINGS)}))
 ORDER BY d.position LIMIT $3
"""
_OWNERS_SQL: Final = (
    "SELECT stream_id, payload->'caller'->>'id' AS owner FROM events"
    " WHERE stream_id = ANY($1::text[]) AND stream_version = 1 AND type = 'IntentReceived'"
)
# Other engines' intents with deadlines written since a scan (ADR 0097): the range walks the
# primary key.
_DEADLINE_STREAMS_BETWEEN_SQL: Final = """
SELECT DISTINCT stream_id FROM events
 WHERE position > $1 AND position <= $2
   AND ((type = 'IntentReceived' AND payload->>'deadline_at_ms' IS NOT NULL)
        OR type = 'IntentApprovalRequested')
"""
_DEADLINE_STREAMS_SQL: Final = """
SELECT DISTINCT stream_id FROM events
 WHERE (type = 'IntentReceived' AND payload->>'deadline_at_ms' IS NOT NULL)
    OR type = 'IntentApprovalRequested'
"""
