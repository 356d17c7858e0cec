"""The projection runner over real NATS, PostgreSQL, the engine, executors and simulated lnd
nodes (ADR 0152): rows follow the log live, exactly once, through faults and restarts; a
rebuild equals live; reads come from the rows; a read-only role reads without writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client

from projections import exceptions as log_fold_exceptions
from projections.catalog import ALL, INTENTS, RECONCILIATION, Doc, Projection
from projections.intents import exception_of
from projections.runner import (
    ProjectionRunner,
    as_record,
    catch_up,
    check,
    checkpoint_of,
    fold,
    head_position,
    rebuild,
)
from projections.store import ProjectionStore
from schemas.upcasting import upcast_record
from services.bootstrap import Engine
from services.bus import subjects
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls
from services.lightning.port import FailureReason
from tests.conftest import wait_for
from tests.integration.test_api import request
from tests.integration.test_executor import (
    MERCHANT,
    SETTLE_TIMEOUT_S,
    SimStack,
    _invoice_intent,
    _state_is,
    signing_engine,
    sim_stack,
)
from tests.integration.test_reconciliation import (
    NODE,
    dispatched,
    pay_behind_our_back,
    reconcile,
    report_outcome,
)

STUCK_AFTER_MS = 60_000


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with signing_engine(nats_url, database_url, tmp_path) as running:
        yield running


@pytest.fixture
async def sim(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    async with sim_stack(tmp_path, nats_url) as stack:
        yield stack


@contextlib.asynccontextmanager
async def live_runner(store: PostgresEventStore, nc: Client) -> AsyncIterator[ProjectionRunner]:
    """A runner woken by the engine's events on CORRIDOR_EVT, as ``corridor up`` runs it; a
    long idle bound, so the test proves the wake-ups carry it."""
    runner = ProjectionRunner(store.pool, ALL, idle_s=30.0)
    subscription = await nc.subscribe(subjects.EVT_WILDCARD, cb=_async(runner.wake))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await task
        await subscription.unsubscribe()


def _async(callback: Any) -> Any:
    async def handler(msg: Any) -> None:
        callback(msg)

    return handler


async def log_fold(store: PostgresEventStore, projection: Projection) -> dict[str, Doc]:
    """The projection folded in memory from the whole log: what the rows must hold."""
    docs: dict[str, Doc | None] = {}
    async for page in store.pages():
        records = [upcast_record(_as_dict(e)) for e in page]
        fold(projection, docs, records)
    return {k: d for k, d in docs.items() if d is not None}


def _as_dict(e: Any) -> dict[str, Any]:
    return {
        "position": e.position,
        "stream_id": e.stream_id,
        "type": e.type,
        "version": e.schema_version,
        "recorded_at_ms": e.recorded_at_ms,
        "data": e.payload,
    }


async def rows(store: PostgresEventStore, projection: Projection) -> dict[str, Doc]:
    import msgspec

    async with store.pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT key, doc::text AS doc FROM projection_rows WHERE projection = $1",
            projection.name,
        )
    return {r["key"]: msgspec.json.decode(r["doc"]) for r in found}


async def at_head(store: PostgresEventStore) -> bool:
    async with store.pool.acquire() as conn:
        head = await head_position(conn)
        return all([(await checkpoint_of(conn, p.name))[0] == head for p in ALL])


async def test_rebuild_equals_live_after_a_mixed_workload_with_faults(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore
) -> None:
    async with live_runner(store, nc):
        # Reconciliation's categories, outcomes reported by hand (no executor yet).
        failed_paid, invoice_a = await dispatched(engine, sim, nc, "failed-paid")
        await pay_behind_our_back(sim, invoice_a.bolt11)
        await report_outcome(nc, failed_paid, "failed", failure_reason="no_route",
                             confirmed_not_paid=True)  # fmt: skip
        # A success after the failure: an anomaly for the exception queue.
        await report_outcome(nc, failed_paid, "succeeded", payment_hash=invoice_a.payment_hash,
                             preimage=invoice_a.preimage, fee_msat=1)  # fmt: skip
        doubtful, _ = await dispatched(engine, sim, nc, "doubtful")
        await report_outcome(nc, doubtful, "failed", failure_reason="no_route")  # not proven
        await dispatched(engine, sim, nc, "stuck")
        stray = sim.network.create_invoice(MERCHANT, 7_000, "stray", 3600)
        await pay_behind_our_back(sim, stray.bolt11)
        await reconcile(sim, store, nc, bound_ms=1, trip=True)
        clear = {"type": "ClearNodeBreaker", "version": 1, "node": NODE, "operator_id": "op-1",
                 "reason": "a refund, ticket 7"}  # fmt: skip
        assert (await request(nc, f"{subjects.RECON_API_PREFIX}.clear.op-1", clear))["ok"]

    # The runner restarts (its state is only the rows and checkpoint); executors pay, one node
    # refuses every route so intents are re-routed.
    async with live_runner(store, nc):
        sim.start("us", "us-lnd", "us-1")
        sim.start("eu", "eu-lnd", "eu-1")
        settled = [(await _invoice_intent(sim, nc, f"ok-{i}"))[0] for i in range(3)]
        for channel in sim.network.channels_of("us-lnd"):
            sim.network.faults.fail_route(
                channel_id=channel.channel_id, reason=FailureReason.NO_ROUTE
            )
        rerouted = (await _invoice_intent(sim, nc, "rerouted"))[0]
        for intent_id in [*settled, rerouted]:
            await wait_for(_state_is(engine, intent_id, "settled"), timeout_s=SETTLE_TIMEOUT_S,
                           what=f"{intent_id} to settle")  # fmt: skip
        await wait_for(lambda: at_head(store), what="the runner to reach the log's head")

    # Live equals a fold of the whole log, and the check proves it.
    for projection in ALL:
        live = await rows(store, projection)
        assert live == await log_fold(store, projection), projection.name
        checked = await check(store.pool, projection)
        assert checked.equal and checked.rows == len(live), checked
    intents = await rows(store, INTENTS)
    assert intents[rerouted]["attempt_failures"] == 1 and intents[rerouted]["state"] == "settled"
    assert [a["node"] for a in intents[rerouted]["attempts"]] == ["us-lnd", "eu-lnd"]
    assert intents[failed_paid]["anomalies"]
    recon = await rows(store, RECONCILIATION)
    assert recon[f"breaker:{NODE}"]["cleared_by"] == "op-1"

    # The exception queue from the rows is what the old fold over the log said.
    now_ms = time.time_ns() // 1_000_000
    projection_store = ProjectionStore(store.pool)
    from_rows = sorted(
        (row for doc in await projection_store.open_intent_docs()
         for row in exception_of(doc, now_ms=now_ms, stuck_after_ms=STUCK_AFTER_MS)),
        key=lambda r: (r["since_ms"], r["intent_id"]),
    )  # fmt: skip
    events = [
        {"type": e.type, "version": e.schema_version, "stream_id": e.stream_id,
         "recorded_at_ms": e.recorded_at_ms, "data": e.payload}
        async for page in store.pages() for e in page
    ]  # fmt: skip
    assert from_rows == log_fold_exceptions.build(
        events, now_ms=now_ms, stuck_after_ms=STUCK_AFTER_MS
    )
    assert {r["kind"] for r in from_rows} == {"anomaly", "in_doubt"}

    # A rebuild swaps in the same rows.
    before = {p.name: await rows(store, p) for p in ALL}
    for projection in ALL:
        rebuilt = await rebuild(store.pool, projection)
        assert rebuilt.position == await store.head_position()
        assert await rows(store, projection) == before[projection.name]


async def submit_dispatched(
    engine: Engine, sim: SimStack, nc: Client, n: int, prefix: str = "d"
) -> list[str]:
    ids = [(await dispatched(engine, sim, nc, f"{prefix}-{i}"))[0] for i in range(n)]
    for intent_id in ids:  # each attempt fails unproven: a counter a double fold would double
        await report_outcome(nc, intent_id, "failed", failure_reason="no_route")
    return ids


async def test_two_runners_fold_every_event_exactly_once(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore
) -> None:
    ids = await submit_dispatched(engine, sim, nc, 6)
    # Small steps, many of them interleaved between the two.
    await asyncio.gather(*(catch_up(store.pool, INTENTS, batch=3) for _ in range(2)))
    live = await rows(store, INTENTS)
    assert live == await log_fold(store, INTENTS)
    assert [live[i]["attempt_failures"] for i in ids] == [1] * 6
    assert [e["position"] for e in live[ids[0]]["timeline"]] == sorted(
        e["position"] for e in live[ids[0]]["timeline"]
    )


async def test_check_names_an_edited_row_and_rebuild_repairs_it(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore
) -> None:
    ids = await submit_dispatched(engine, sim, nc, 2)
    await catch_up(store.pool, INTENTS)
    async with store.pool.acquire() as conn:
        await conn.execute(
            "UPDATE projection_rows SET doc = jsonb_set(doc, '{amount_msat}', '1')"
            " WHERE projection = 'intents' AND key = $1",
            ids[1],
        )
    checked = await check(store.pool, INTENTS)
    assert checked.differences == 1 and checked.shown == [
        {"key": ids[1], "problem": "document differs"}
    ]
    await rebuild(store.pool, INTENTS)
    assert (await check(store.pool, INTENTS)).equal


async def test_a_new_fold_version_rebuilds_before_it_serves(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore
) -> None:
    ids = await submit_dispatched(engine, sim, nc, 1)
    await catch_up(store.pool, INTENTS)
    async with store.pool.acquire() as conn:  # rows an older fold wrote, now wrong
        await conn.execute(
            "UPDATE projection_rows SET doc = doc - 'attempts' WHERE projection = 'intents'"
        )
        await conn.execute("UPDATE projection_checkpoints SET version = 0")
    await catch_up(store.pool, INTENTS)
    assert (await rows(store, INTENTS))[ids[0]]["attempts"]
    async with store.pool.acquire() as conn:
        assert (await checkpoint_of(conn, INTENTS.name))[1] == INTENTS.version


async def test_a_read_only_role_reads_the_rows_and_says_how_far_behind(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore, database_urls: RoleUrls
) -> None:
    ids = await submit_dispatched(engine, sim, nc, 1)
    await catch_up(store.pool, INTENTS)
    await submit_dispatched(engine, sim, nc, 0)
    more = (await dispatched(engine, sim, nc, "later"))[0]  # after the runner's step
    auditor = await asyncpg.create_pool(database_urls.auditor, min_size=1, max_size=2)
    try:
        reader = ProjectionStore(auditor)
        assert await reader.refresh([INTENTS]) is False
        assert await reader.intent_doc(ids[0]) is not None
        assert await reader.intent_doc(more) is None
        (lag,) = await reader.lag([INTENTS])
        assert lag.behind > 0
    finally:
        await auditor.close()
    writer = ProjectionStore(store.pool)
    assert await writer.refresh([INTENTS]) is True
    doc = await writer.intent_doc(more)
    assert doc is not None and doc["state"] == "dispatched"
    newest = await writer.search_intents(caller_id=doc["caller_id"])
    assert newest[0]["intent_id"] == more


async def test_events_read_through_the_upcasters(store: PostgresEventStore) -> None:
    """A row's shape as stored is folded as today's version (IntentSettled v1 has no fee_ppm)."""
    record = as_record(
        {
            "position": 1,
            "stream_id": "i-1",
            "type": "IntentSettled",
            "schema_version": 1,
            "recorded_at_ms": 5,
            "payload": '{"amount_msat": 1000, "fee_msat": 10, '
            '"total_msat": 1010, "preimage": "' + "00" * 32 + '"}',
        }
    )
    assert record["version"] == 2 and record["data"]["fee_ppm"] == 10_000


async def test_the_runner_survives_its_connections_being_killed(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore, database_url: str
) -> None:
    """What a database restart does to the runner: every connection of its pool dropped."""
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, server_settings={"application_name": "runner"}
    )
    runner = ProjectionRunner(pool, ALL, idle_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await submit_dispatched(engine, sim, nc, 2)
        await wait_for(lambda: at_head(store), what="the runner to reach the head")
        async with store.pool.acquire() as conn:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'runner'"
            )
        assert killed >= 1
        await submit_dispatched(engine, sim, nc, 2, prefix="after")
        await wait_for(lambda: at_head(store), what="the runner to reach the head again")
        assert not task.done()
    finally:
        stop.set()
        await task
        await pool.close()
    for projection in ALL:
        assert (await check(store.pool, projection)).equal
