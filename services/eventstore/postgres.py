"""The event store on PostgreSQL via asyncpg. One statement per append (see 0001_event_log.sql)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import msgspec

from services.eventstore.hashing import GENESIS_HASH, chain_hash, event_body
from services.eventstore.migrate import migrate
from services.eventstore.port import (
    AppendFence,
    ChainReport,
    ClaimConflict,
    ConcurrencyConflict,
    IdempotencyClaim,
    NewEvent,
    StalePolicy,
    StaleSpend,
    StoredEvent,
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
    """Pooled connections hold no session state (no LISTEN, advisory lock or SET: the relay
    uses its own connection for those), so asyncpg's default reset, a round trip of
    RESET ALL / UNLISTEN * / unlock-all on every release, is skipped. It was 19 % of the
    engine's CPU in `corridor bench`."""


class PostgresEventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

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
        return cls(pool)

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
        checked = 0
        last = after_position
        prev = await self.hash_at(after_position)
        page = 5000
        while limit is None or checked < limit:
            batch = await self.read_all(
                after_position=last, limit=page if limit is None else min(page, limit - checked)
            )
            if not batch:
                break
            for event in batch:
                problem = _check_link(event, prev, expected_position=last + 1)
                if problem:
                    return ChainReport(
                        checked=checked, last_position=last, ok=False,
                        first_bad_position=event.position, problem=problem,
                    )  # fmt: skip
                prev = event.hash
                last = event.position
                checked += 1
        return ChainReport(checked=checked, last_position=last, ok=True)


def _check_link(event: StoredEvent, prev: bytes | None, *, expected_position: int) -> str | None:
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
