"""Reads from the projection tables: what the CLI (and later the HTTP API) answers from.

Nothing here scans the log. A reader that may write the rows (the engine's role: the dev
stack's CLI) first catches the projections up, so an answer is never older than the question;
a read-only reader (the auditor's role) answers from the rows as they are and says how far
behind the log they are (``lag``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import msgspec

from projections.catalog import ALL, INTENTS, RECONCILIATION, Doc, Projection
from projections.runner import catch_up, checkpoint_of, head_position

# Rows a search returns at most; a caller pages with a narrower time range.
SEARCH_ROWS_MAX: Final = 1000

_decode = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class Lag:
    projection: str
    position: int
    head: int

    @property
    def behind(self) -> int:
        return self.head - self.position


class ProjectionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def refresh(self, projections: Sequence[Projection] = ALL) -> bool:
        """Catch up before reading, where this role may write the rows; False if it may not
        (a read-only role reads the rows as the runner left them)."""
        try:
            for projection in projections:
                await catch_up(self._pool, projection)
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError):
            return False
        return True

    async def lag(self, projections: Sequence[Projection] = ALL) -> list[Lag]:
        async with self._pool.acquire() as conn:
            head = await head_position(conn)
            return [Lag(p.name, (await checkpoint_of(conn, p.name))[0], head) for p in projections]

    async def _docs(self, sql: str, *args: Any) -> list[Doc]:
        async with self._pool.acquire() as conn:
            return [_decode.decode(r["doc"]) for r in await conn.fetch(sql, *args)]

    async def intent_doc(self, intent_id: str) -> Doc | None:
        docs = await self._docs(
            "SELECT doc::text AS doc FROM projection_rows WHERE projection = $1 AND key = $2",
            INTENTS.name,
            intent_id,
        )
        return docs[0] if docs else None

    async def intent_docs(self, *, received_from_ms: int, received_to_ms: int) -> list[Doc]:
        """Intents received in ``[received_from_ms, received_to_ms)``, oldest first."""
        return await self._docs(
            "SELECT doc::text AS doc FROM projection_rows WHERE projection = $1"
            " AND sort_ms >= $2 AND sort_ms < $3 ORDER BY sort_ms, key",
            INTENTS.name,
            received_from_ms,
            received_to_ms,
        )

    async def search_intents(
        self,
        *,
        caller_id: str | None = None,
        corridor: str | None = None,
        received_from_ms: int | None = None,
        received_to_ms: int | None = None,
        limit: int = 100,
    ) -> list[Doc]:
        """Intents by caller, corridor and time received (each optional), newest first."""
        limit = max(1, min(limit, SEARCH_ROWS_MAX))
        return await self._docs(
            "SELECT doc::text AS doc FROM projection_rows WHERE projection = $1"
            " AND ($2::text IS NULL OR caller_id = $2)"
            " AND ($3::text IS NULL OR corridor = $3)"
            " AND ($4::bigint IS NULL OR sort_ms >= $4)"
            " AND ($5::bigint IS NULL OR sort_ms < $5)"
            " ORDER BY sort_ms DESC, key LIMIT $6",
            INTENTS.name,
            caller_id,
            corridor,
            received_from_ms,
            received_to_ms,
            limit,
        )

    async def intents_in_state(self, state: str, *, limit: int = 100) -> list[Doc]:
        """Intents now in ``state`` (e.g. ``awaiting_approval``), oldest first."""
        limit = max(1, min(limit, SEARCH_ROWS_MAX))
        return await self._docs(
            "SELECT doc::text AS doc FROM projection_rows WHERE projection = $1"
            " AND doc->>'state' = $2 ORDER BY sort_ms, key LIMIT $3",
            INTENTS.name,
            state,
            limit,
        )

    async def open_intent_docs(self) -> list[Doc]:
        """Intents on the wire or with an unacknowledged anomaly: the exception candidates."""
        return await self._docs(
            "SELECT doc::text AS doc FROM projection_rows WHERE projection = $1 AND open"
            " ORDER BY sort_ms, key",
            INTENTS.name,
        )

    async def reconciliation_docs(self, *, open_only: bool = False) -> list[Doc]:
        """Reconciliation items (``kind`` "item") and breakers (``kind`` "breaker"), oldest
        first; closed ones too unless ``open_only``."""
        return await self._docs(
            "SELECT doc::text AS doc FROM projection_rows WHERE projection = $1"
            " AND (open OR NOT $2) ORDER BY sort_ms, key",
            RECONCILIATION.name,
            open_only,
        )
