"""The reconciler reads the database as the read-only auditor role; the engine stores its
cursors once each pass's report is committed (ADR 0163), over real NATS, PostgreSQL, the
engine and a simulated lnd."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from services.bootstrap import Engine
from services.bus.nats_adapter import NatsBus
from services.engine.reconciliation_cursor import index_checkpoint, log_checkpoint
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls
from services.executor.nodes import adapter_for, resolve_node
from services.reconciliation.client import EngineReporter
from services.reconciliation.worker import PassConfig, PassResult, ReconciliationWorker
from tests.integration.test_executor import MERCHANT
from tests.integration.test_reconciliation import (  # noqa: F401 (fixtures)
    HOUR_MS,
    NODE,
    REGION,
    SimStack,
    engine,
    pay_behind_our_back,
    sim,
)


@pytest.fixture
async def auditor_store(database_urls: RoleUrls) -> AsyncIterator[PostgresEventStore]:
    store = await PostgresEventStore.connect(database_urls.auditor, pool_max=2)
    yield store
    await store.close()


async def one_pass(sim: SimStack, store: PostgresEventStore, nc: Client) -> PassResult:  # noqa: F811
    resolved = resolve_node(f"sim://{NODE}", region=REGION, state_dir=sim.state_dir)
    adapter = adapter_for(resolved.uri)
    try:
        worker = ReconciliationWorker(
            node=NODE, region=REGION, adapter=adapter, store=store,
            report=EngineReporter(NatsBus(nc), node=NODE),
            now_ms=lambda: time.time_ns() // 10**6,
            config=PassConfig(in_flight_bound_ms=HOUR_MS, lookback_ms=HOUR_MS, page_max=10,
                              pages_max=10, trip_breaker=False),
        )  # fmt: skip
        return await worker.run_once()
    finally:
        await adapter.close()  # an open gRPC channel breaks later forks (grpc/grpc#43055)


async def test_a_read_only_reconciler_resumes_from_the_cursor_the_engine_stored(
    engine: Engine,  # noqa: F811
    sim: SimStack,  # noqa: F811
    nc: Client,
    auditor_store: PostgresEventStore,
) -> None:
    names = (index_checkpoint(NODE), log_checkpoint(NODE))
    # Nothing on the node yet: the pass still reports, and its cursor is stored.
    empty = await one_pass(sim, auditor_store, nc)
    assert empty.mismatches == [] and len(empty.replies) == 1
    assert set(await auditor_store.get_checkpoints(names)) == set(names)

    stray = sim.network.create_invoice(MERCHANT, 7_000, "stray", 3600)
    await pay_behind_our_back(sim, stray.bolt11)
    found = await one_pass(sim, auditor_store, nc)
    assert [str(m.category) for m in found.mismatches] == ["unexpected_payment"]
    assert found.new_items == 1 and found.listed == 1
    cursors = await engine.store.get_checkpoints(names)
    assert cursors[names[0]] >= 1, cursors

    # The next pass starts after the node's final record: nothing is listed again.
    again = await one_pass(sim, auditor_store, nc)
    assert again.listed == 0 and again.new_items == 0
