"""What only the PostgreSQL event store shows: the append-only trigger, tampering found by the
chain, ordering under real transactions, migrations, the prefetching reader.

What every store must do (appends, conflicts, claims, fences, the chain, the lease) is the one
contract suite, tests/contract/test_event_store_contract.py, run here and on the in-memory twin.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from schemas import events as ev
from schemas.records import EventMetadata
from services.engine.event_codec import to_new_events
from services.eventstore.migrate import MigrationDrift, available_migrations, migrate
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls
from tests.conftest import wait_for

META = EventMetadata(correlation_id="c", causation_id="k", actor="test")


def _events(stream_id: str, first_version: int, count: int = 1):
    data = [ev.IntentCancelled(by="t", reason=f"n{first_version + i}") for i in range(count)]
    return to_new_events(stream_id, first_version, data, META, 1_700_000_000_123)


async def test_log_is_append_only(store: PostgresEventStore) -> None:
    await store.append(_events("s", 1))
    async with store.pool.acquire() as conn:
        for sql in ("UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)


async def test_hash_chain_detects_tampering(
    store: PostgresEventStore, database_urls: RoleUrls
) -> None:
    for i in range(5):
        await store.append(_events(f"s{i}", 1, 2))
    report = await store.verify_chain()
    assert report.ok and report.checked == 10 and report.last_position == 10
    # An attacker with the owner's password (the engine's cannot: test_db_roles) disables the
    # guard and edits one payload.
    conn = await asyncpg.connect(database_urls.owner)
    try:
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await conn.execute(
            """UPDATE events SET payload = '{"by": "t", "reason": "forged"}' WHERE position = 7"""
        )
    finally:
        await conn.close()
    report = await store.verify_chain()
    assert not report.ok
    assert report.first_bad_position == 7
    assert report.checked == 6


async def test_late_commit_is_never_skipped_by_a_tailing_reader(
    store: PostgresEventStore, database_url: str
) -> None:
    """Transaction A takes a position and commits late; B starts after A and must wait.

    With sequence-assigned positions, B would commit position 2 first, a reader would advance
    past 1, and A's event would be skipped forever. Here B cannot even get a position until A
    commits, so readers see positions strictly in commit order.
    """
    [a_event] = _events("late-a", 1)
    conn_a = await asyncpg.connect(database_url)
    tx = conn_a.transaction()
    await tx.start()
    await conn_a.fetchval(
        "SELECT append_events($1, $2, $3, $4, $5, $6::text[]::jsonb[], $7::text[]::jsonb[],"
        " $8, $9, '{}', '{}', '{}', '{}')",
        [a_event.stream_id], [1], [uuid.UUID(a_event.event_id)], [a_event.type], [1],
        [a_event.payload.decode()], [a_event.metadata.decode()], [a_event.recorded_at_ms],
        [a_event.body],
    )  # fmt: skip
    b_task = asyncio.create_task(store.append(_events("late-b", 1)))

    async def b_is_waiting_on_a_lock() -> bool:
        async with store.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE '%append_events%'"
                )
            )

    await wait_for(b_is_waiting_on_a_lock, what="B to block behind A")
    assert await store.read_all(after_position=0, limit=10) == []
    assert not b_task.done()
    await tx.commit()
    await conn_a.close()
    await b_task
    seen = await store.read_all(after_position=0, limit=10)
    assert [(e.position, e.stream_id) for e in seen] == [(1, "late-a"), (2, "late-b")]


async def test_migrations_are_versioned_idempotent_and_refuse_drift(
    database_urls: RoleUrls,
) -> None:
    conn = await asyncpg.connect(database_urls.owner)
    try:
        assert await migrate(conn) == []  # the template already applied them
        applied = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in applied] == [m.version for m in available_migrations()]
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(MigrationDrift):
            await migrate(conn)
    finally:
        await conn.close()


async def test_leaving_pages_early_leaves_no_read_running(store: PostgresEventStore) -> None:
    await store.append(_events("s", 1, count=10))
    pages = store.pages(page=2)
    first = await anext(pages)
    await pages.aclose()  # the prefetched second page is cancelled, not left pending
    assert [e.position for e in first] == [1, 2]
    assert [t for t in asyncio.all_tasks() if "read_all" in repr(t.get_coro())] == []
