"""The projection runner: folds the log into ``projection_rows``, exactly once, in order.

- **Catch-up from PostgreSQL by position.** Each step reads the events after the projection's
  checkpoint, folds them into the documents they touch, and writes those rows and the new
  checkpoint in one transaction. The log's positions are gapless and become visible in commit
  order (``0001_event_log.sql``), so reading ``position > checkpoint`` never skips one; a step
  that sees a hole anyway stops rather than move past it.
- **Exactly once.** The step holds a transaction-scoped advisory lock per projection, so two
  runners (or a runner and a reader catching up before it answers) never fold one event twice:
  the second waits, then reads the checkpoint the first committed.
- **JetStream for liveness.** ``run`` sleeps until the engine publishes an event on
  ``CORRIDOR_EVT`` (a core subscription wakes it) and catches up then; it also wakes every
  ``idle_s`` so a lost notification delays, never loses, an event.
- **Upcasters.** Every event is read through ``schemas.upcasting.upcast_record``.
- **Rebuild.** ``rebuild`` folds the whole log into the rows named ``<projection>#shadow`` and
  swaps them in with one transaction; ``check`` folds the log in memory up to the live
  checkpoint and lists every row that differs (ADR 0152).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import asyncpg
import msgspec
import structlog
from asyncpg.pool import PoolConnectionProxy

from projections.catalog import Doc, Projection
from schemas.upcasting import upcast_record

log = structlog.get_logger("corridor.projections")

# Events per step: one transaction each. Large enough to amortise the round trips, small enough
# that a step holds its lock (and a reader waiting on it) for well under a second.
BATCH_EVENTS: Final = 500
# The liveness fallback: a step at least this often even if no event notification arrives.
IDLE_S: Final = 1.0
STEP_INTERVAL_S: Final = 0.25
SHADOW_SUFFIX: Final = "#shadow"
# What ``check`` reports at most; the count of differences is always exact.
CHECK_DIFFERENCES_SHOWN_MAX: Final = 50

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(dict[str, Any])

_EVENTS_AFTER: Final = """
SELECT position, stream_id, type, schema_version, payload::text AS payload,
       (extract(epoch from recorded_at) * 1000)::bigint AS recorded_at_ms
  FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"""
_UPSERT: Final = """
INSERT INTO projection_rows (projection, key, doc, sort_ms, caller_id, corridor, open)
SELECT $1, k, d::jsonb, s, c, r, o
  FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bool[])
       AS t(k, d, s, c, r, o)
ON CONFLICT (projection, key) DO UPDATE
   SET doc = EXCLUDED.doc, sort_ms = EXCLUDED.sort_ms, caller_id = EXCLUDED.caller_id,
       corridor = EXCLUDED.corridor, open = EXCLUDED.open"""
_SET_CHECKPOINT: Final = """
INSERT INTO projection_checkpoints (projection, position, version) VALUES ($1, $2, $3)
ON CONFLICT (projection) DO UPDATE
   SET position = EXCLUDED.position, version = EXCLUDED.version, updated_at = now()"""
_HEAD: Final = "SELECT position FROM event_log_head"


# A connection of its own or one lent by a pool: the steps run on either.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class PositionGap(RuntimeError):
    """The log returned a position other than the next one: never folded past."""


def lock_key(projection_name: str) -> int:
    """A signed 64-bit advisory-lock key per projection (shadow and live share it)."""
    digest = hashlib.sha256(f"corridor/projection/{projection_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def as_record(row: asyncpg.Record) -> dict[str, Any]:
    """A log row in the shape the folds read (upcast), with its position."""
    return upcast_record(
        {
            "position": row["position"],
            "stream_id": row["stream_id"],
            "type": row["type"],
            "version": row["schema_version"],
            "recorded_at_ms": row["recorded_at_ms"],
            "data": _decode.decode(row["payload"]),
        }
    )


def fold(
    projection: Projection, docs: dict[str, Doc | None], events: Iterable[dict[str, Any]]
) -> set[str]:
    """Apply ``events`` to ``docs`` in place; the keys that changed."""
    touched: set[str] = set()
    for event in events:
        for key in projection.keys(event):
            docs[key] = projection.apply(docs.get(key), event)
            touched.add(key)
    return touched


async def checkpoint_of(conn: Conn, name: str) -> tuple[int, int | None]:
    """(position, version) of a projection's rows; (0, None) before its first step."""
    row = await conn.fetchrow(
        "SELECT position, version FROM projection_checkpoints WHERE projection = $1", name
    )
    return (0, None) if row is None else (int(row["position"]), int(row["version"]))


async def _step(
    conn: Conn,
    projection: Projection,
    *,
    target: str,
    through_position: int,
    limit: int,
) -> int:
    """One transaction: the next ``limit`` events after ``target``'s checkpoint (up to
    ``through_position``) folded into its rows. Returns how many were applied."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(projection.name))
        after, _version = await checkpoint_of(conn, target)
        rows = await conn.fetch(_EVENTS_AFTER, after, through_position, limit)
        if not rows:
            return 0
        events = [as_record(row) for row in rows]
        for expected, event in enumerate(events, start=after + 1):
            if event["position"] != expected:
                got = event["position"]
                raise PositionGap(f"{target}: expected position {expected}, got {got}")
        keys = sorted({k for event in events for k in projection.keys(event)})
        docs: dict[str, Doc | None] = {
            r["key"]: _decode.decode(r["doc"])
            for r in await conn.fetch(
                "SELECT key, doc::text AS doc FROM projection_rows"
                " WHERE projection = $1 AND key = ANY($2::text[])",
                target,
                keys,
            )
        }
        touched = fold(projection, docs, events)
        await write_rows(conn, projection, target, {k: docs[k] for k in touched})
        await conn.execute(_SET_CHECKPOINT, target, events[-1]["position"], projection.version)
        return len(events)


async def write_rows(
    conn: Conn, projection: Projection, target: str, docs: dict[str, Doc | None]
) -> None:
    kept = {k: d for k, d in docs.items() if d is not None}
    gone = [k for k, d in docs.items() if d is None]
    if kept:
        columns = [projection.columns(d) for d in kept.values()]
        await conn.execute(
            _UPSERT,
            target,
            list(kept),
            [_json.encode(d).decode() for d in kept.values()],
            [c.sort_ms for c in columns],
            [c.caller_id for c in columns],
            [c.corridor for c in columns],
            [c.open for c in columns],
        )
    if gone:
        await conn.execute(
            "DELETE FROM projection_rows WHERE projection = $1 AND key = ANY($2::text[])",
            target,
            gone,
        )


async def head_position(conn: Conn) -> int:
    return int(await conn.fetchval(_HEAD))


async def catch_up(
    pool: asyncpg.Pool,
    projection: Projection,
    *,
    target: str | None = None,
    through_position: int | None = None,
    batch: int = BATCH_EVENTS,
    check_version: bool = True,
) -> int:
    """Fold until the checkpoint reaches ``through_position`` (default: the head when called).
    Returns the number of events applied. A live projection whose version is not the fold's
    is rebuilt first (``ensure_current``; a runner checks once, at its start)."""
    async with pool.acquire() as conn:
        if target is None and check_version:
            await ensure_current(pool, projection)
        goal = await head_position(conn) if through_position is None else through_position
        applied = 0
        while True:
            n = await _step(
                conn, projection, target=target or projection.name,
                through_position=goal, limit=batch,
            )  # fmt: skip
            applied += n
            if n < batch:
                return applied


async def ensure_current(pool: asyncpg.Pool, projection: Projection) -> None:
    """Rebuild a projection whose rows a different fold version wrote."""
    async with pool.acquire() as conn:
        _position, version = await checkpoint_of(conn, projection.name)
    if version is not None and version != projection.version:
        log.warning("projection_version_changed", projection=projection.name,
                    stored=version, fold=projection.version)  # fmt: skip
        await rebuild(pool, projection)


@dataclass(frozen=True, slots=True)
class Rebuilt:
    projection: str
    position: int
    rows: int


async def rebuild(
    pool: asyncpg.Pool, projection: Projection, *, batch: int = BATCH_EVENTS
) -> Rebuilt:
    """Fold the whole log into the shadow rows, then swap them in with one transaction.

    The shadow is folded step by step without holding up the live runner; the swap takes the
    projection's lock, folds the shadow through the events committed meanwhile, and replaces
    the live rows and checkpoint. A crash before the swap leaves the live rows as they were
    (the next rebuild starts its shadow afresh)."""
    shadow = projection.name + SHADOW_SUFFIX
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM projection_rows WHERE projection = $1", shadow)
        await conn.execute("DELETE FROM projection_checkpoints WHERE projection = $1", shadow)
    await catch_up(pool, projection, target=shadow, batch=batch)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(projection.name))
        head = await head_position(conn)
        # The lock is reentrant within this transaction, so the last steps run here.
        while await _step(conn, projection, target=shadow, through_position=head, limit=batch):
            pass
        await conn.execute("DELETE FROM projection_rows WHERE projection = $1", projection.name)
        await conn.execute(
            "UPDATE projection_rows SET projection = $1 WHERE projection = $2",
            projection.name,
            shadow,
        )
        await conn.execute("DELETE FROM projection_checkpoints WHERE projection = $1", shadow)
        await conn.execute(_SET_CHECKPOINT, projection.name, head, projection.version)
        rows = int(
            await conn.fetchval(
                "SELECT count(*) FROM projection_rows WHERE projection = $1", projection.name
            )
        )
    log.info("projection_rebuilt", projection=projection.name, position=head, rows=rows)
    return Rebuilt(projection=projection.name, position=head, rows=rows)


@dataclass(frozen=True, slots=True)
class Checked:
    projection: str
    position: int
    rows: int
    differences: int
    shown: list[dict[str, Any]] = field(default_factory=list)  # {key, problem}

    @property
    def equal(self) -> bool:
        return self.differences == 0


async def check(pool: asyncpg.Pool, projection: Projection, *, batch: int = 5000) -> Checked:
    """Prove that rebuild equals live: fold the log in memory up to the live checkpoint and
    compare every row (document and filter columns).

    One REPEATABLE READ transaction sees the live rows, their checkpoint and the log as of one
    instant; the runner writes rows and checkpoint together, so they agree in that snapshot
    whatever it does meanwhile. The fold is held in memory: one document per key."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        position, _version = await checkpoint_of(conn, projection.name)
        docs: dict[str, Doc | None] = {}
        after = 0
        while after < position:
            rows = await conn.fetch(_EVENTS_AFTER, after, position, batch)
            if not rows:
                break
            fold(projection, docs, (as_record(r) for r in rows))
            after = int(rows[-1]["position"])
        live = {
            r["key"]: r
            for r in await conn.fetch(
                "SELECT key, doc::text AS doc, sort_ms, caller_id, corridor, open"
                " FROM projection_rows WHERE projection = $1",
                projection.name,
            )
        }
    rebuilt = {k: d for k, d in docs.items() if d is not None}
    problems = list(_differences(projection, rebuilt, live))
    return Checked(
        projection=projection.name, position=position, rows=len(live),
        differences=len(problems), shown=problems[:CHECK_DIFFERENCES_SHOWN_MAX],
    )  # fmt: skip


def _differences(
    projection: Projection, rebuilt: dict[str, Doc], live: dict[str, asyncpg.Record]
) -> Iterable[dict[str, Any]]:
    for key in sorted(rebuilt.keys() | live.keys()):
        if key not in live:
            yield {"key": key, "problem": "missing from the live rows"}
        elif key not in rebuilt:
            yield {"key": key, "problem": "in the live rows, not in the rebuild"}
        else:
            row, doc = live[key], rebuilt[key]
            if _decode.decode(row["doc"]) != doc:
                yield {"key": key, "problem": "document differs"}
            elif tuple(row[c] for c in ("sort_ms", "caller_id", "corridor", "open")) != (
                lambda c: (c.sort_ms, c.caller_id, c.corridor, c.open)
            )(projection.columns(doc)):
                yield {"key": key, "problem": "filter columns differ"}


@dataclass
class ProjectionRunner:
    """Keeps every projection at the log's head: a step whenever the engine publishes, and at
    least every ``idle_s``. ``wake()`` is the JetStream subscription's callback."""

    pool: asyncpg.Pool
    projections: Sequence[Projection]
    idle_s: float = IDLE_S
    # At most one step per this interval: under load the events of many commits go in one
    # transaction instead of one each (readers catch up themselves before they answer).
    step_interval_s: float = STEP_INTERVAL_S
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Monotonic time of the last step that reached the head: what a readiness probe judges.
    last_step_at: float | None = None

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        checked = False
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._wake.clear()
            started = loop.time()
            try:
                for projection in self.projections:
                    await catch_up(self.pool, projection, check_version=not checked)
                checked = True
                self.last_step_at = time.monotonic()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The database restarting: try again at the next wake, nothing was half-written.
                log.warning("projection_step_failed", error=type(exc).__name__)
            except PositionGap as exc:
                # Never folded past; said loudly and tried again, the rows stay where they were.
                log.error("projection_position_gap", error=str(exc))
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waits, timeout=self.idle_s, return_when=asyncio.FIRST_COMPLETED)
                rest = self.step_interval_s - (loop.time() - started)
                if rest > 0 and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=rest)
            finally:
                for w in waits:
                    w.cancel()
