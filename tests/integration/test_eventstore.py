"""The PostgreSQL event store: append, optimistic concurrency, ordering, hash chain."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from schemas import events as ev
from schemas.records import EventMetadata
from services.engine.event_codec import to_new_events
from services.eventstore.migrate import MigrationDrift, available_migrations, migrate
from services.eventstore.port import ClaimConflict, ConcurrencyConflict, IdempotencyClaim
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls
from tests.conftest import wait_for

META = EventMetadata(correlation_id="c", causation_id="k", actor="test")


def _events(stream_id: str, first_version: int, count: int = 1):
    data = [ev.IntentCancelled(by="t", reason=f"n{first_version + i}") for i in range(count)]
    return to_new_events(stream_id, first_version, data, META, 1_700_000_000_123)


async def test_append_and_read_back(store: PostgresEventStore) -> None:
    first = await store.append(_events("s-1", 1, 3))
    assert first == 1
    stream = await store.read_stream("s-1")
    assert [e.stream_version for e in stream] == [1, 2, 3]
    assert [e.position for e in stream] == [1, 2, 3]
    assert stream[0].recorded_at_ms == 1_700_000_000_123
    assert stream[0].payload == {"by": "t", "reason": "n1"}
    assert await store.head_position() == 3


async def test_conflicting_writer_is_refused(store: PostgresEventStore) -> None:
    await store.append(_events("s-1", 1))
    with pytest.raises(ConcurrencyConflict):
        await store.append(_events("s-1", 1))
    # The failed batch left nothing behind: positions stay gapless.
    await store.append(_events("s-2", 1))
    assert [e.position for e in await store.read_all(after_position=0, limit=10)] == [1, 2]


async def test_concurrent_writers_exactly_one_wins(store: PostgresEventStore) -> None:
    results = await asyncio.gather(
        *(store.append(_events("race", 1)) for _ in range(10)), return_exceptions=True
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, ConcurrencyConflict) for r in results if r not in wins)


async def test_claim_conflict_rolls_back_the_whole_batch(store: PostgresEventStore) -> None:
    claim = IdempotencyClaim(caller_id="a", idempotency_key="k", intent_id="i", fingerprint="f")
    await store.append(_events("i", 1), [claim])
    with pytest.raises(ClaimConflict):
        await store.append(_events("other", 1), [claim])
    assert await store.read_stream("other") == []
    assert await store.find_claim("a", "k") == claim


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


async def test_tailing_reader_sees_every_position_under_concurrent_appends(
    store: PostgresEventStore,
) -> None:
    writers, per_writer = 8, 25
    done = asyncio.Event()
    seen: list[int] = []

    async def tail() -> None:
        position = 0
        while True:
            finished = done.is_set()
            batch = await store.read_all(after_position=position, limit=50)
            for event in batch:
                # A reader that only moves forward must see a contiguous sequence.
                assert event.position == position + 1, (position, event.position)
                position = event.position
                seen.append(position)
            if finished and not batch:
                return
            await asyncio.sleep(0)

    async def write(w: int) -> None:
        for i in range(per_writer):
            await store.append(_events(f"w{w}-{i}", 1))

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(write(w) for w in range(writers)))
    done.set()
    await reader
    assert seen == list(range(1, writers * per_writer + 1))
    assert (await store.verify_chain()).ok


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


async def test_checkpoints(store: PostgresEventStore) -> None:
    assert await store.get_checkpoint("x") == 0
    await store.set_checkpoint("x", 42)
    await store.set_checkpoint("x", 43)
    assert await store.get_checkpoint("x") == 43


async def test_pages_read_the_whole_log_once_in_order(store: PostgresEventStore) -> None:
    for i in range(7):
        await store.append(_events(f"s{i}", 1, count=3))
    positions = [e.position async for page in store.pages(page=4) for e in page]
    assert positions == list(range(1, 22))
    after = [e.position async for page in store.pages(after_position=19, page=4) for e in page]
    assert after == [20, 21]


async def test_leaving_pages_early_leaves_no_read_running(store: PostgresEventStore) -> None:
    await store.append(_events("s", 1, count=10))
    pages = store.pages(page=2)
    first = await anext(pages)
    await pages.aclose()  # the prefetched second page is cancelled, not left pending
    assert [e.position for e in first] == [1, 2]
    assert [t for t in asyncio.all_tasks() if "read_all" in repr(t.get_coro())] == []
