"""Open the projection tables for a CLI read: what ``exceptions``, ``recon list``, ``audit
timeline`` and ``pilot report`` answer from (ADR 0152).

With the dev stack's role the rows are caught up first, so an answer includes every event
committed before the question; with a read-only role (``DATABASE_URL`` naming the auditor) they
are read as the runner left them, and ``behind`` says by how many events.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from projections.store import ProjectionStore
from services.endpoints import find_stack
from services.eventstore.postgres import PostgresEventStore


@contextlib.asynccontextmanager
async def projection_store(state_dir: Path | None) -> AsyncIterator[ProjectionStore]:
    stack = find_stack(state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    try:
        reader = ProjectionStore(store.pool)
        if not await reader.refresh():
            for lag in await reader.lag():
                if lag.behind:
                    print(
                        f"note: the {lag.projection} projection is {lag.behind} event(s) behind "
                        f"the log (position {lag.position} of {lag.head}); is its runner up?",
                        file=sys.stderr,
                    )
        yield reader
    finally:
        await store.close()
