"""Every ``EventStore`` adapter, for the one contract suite (ADR 0090).

``postgres``: ``PostgresEventStore`` on a fresh database of the harness's real PostgreSQL, as the
engine's role. ``memory``: ``InMemoryEventStore`` on a clock the test moves. Each comes with the
two controls the contract needs from outside the port: ageing the idempotency claims, and
cutting every lease's session (a dropped connection).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest

from services.eventstore.memory import InMemoryEventStore
from services.eventstore.port import EventStore
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls

STORE_KINDS = ("postgres", "memory")
# The memory store's clock starts here (any fixed instant: the suite is deterministic).
CLOCK_START_MS = 1_700_000_000_000


@dataclass
class StoreEnv:
    kind: str
    store: EventStore
    # Make every claim ``seconds`` older than it is.
    age_claims: Callable[[int], Awaitable[None]]
    # End every lease's session, as a lost connection does.
    cut_leases: Callable[[], Awaitable[None]]


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def role_urls(store_kind: str, request: pytest.FixtureRequest) -> RoleUrls | None:
    """A fresh database only for the PostgreSQL store (the memory one needs no server)."""
    if store_kind != "postgres":
        return None
    urls: RoleUrls = request.getfixturevalue("database_urls")
    return urls


@pytest.fixture
async def store_env(store_kind: str, role_urls: RoleUrls | None) -> AsyncIterator[StoreEnv]:
    if role_urls is None:
        yield _memory_env()
        return
    store = await PostgresEventStore.connect(role_urls.engine, pool_max=20)
    owner = await asyncpg.connect(role_urls.owner)

    async def age_claims(seconds: int) -> None:
        await owner.execute(
            "UPDATE idempotency_keys SET created_at = created_at - $1 * interval '1 second'",
            seconds,
        )

    async def cut_leases() -> None:
        # An advisory lock or a LISTEN lives on its connection: end those connections (the
        # engine's role may end its own role's sessions; the owner's may not).
        async with store.pool.acquire() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND (pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
                "      OR query LIKE 'LISTEN%')"
            )

    try:
        yield StoreEnv("postgres", store, age_claims, cut_leases)
    finally:
        await owner.close()
        await store.close()


def _memory_env() -> StoreEnv:
    now_ms = [CLOCK_START_MS]
    store = InMemoryEventStore(now_ms=lambda: now_ms[0])

    async def age_claims(seconds: int) -> None:
        now_ms[0] += seconds * 1000

    async def cut_leases() -> None:
        store.lose_leases()

    return StoreEnv("memory", store, age_claims, cut_leases)
