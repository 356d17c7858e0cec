from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from services.bootstrap import Engine, bootstrap
from services.eventstore.postgres import PostgresEventStore
from services.settings import Settings
from tests.conftest import wait_for
from tests.nats_creds import connect_as


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresEventStore]:
    store = await PostgresEventStore.connect(database_url, pool_max=20)
    yield store
    await store.close()


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    # The engine's signing key in the test's state dir (ADR 0063), not in the cwd's .corridor/.
    engine = await bootstrap(
        Settings(relay_poll_s=0.2, state_dir=tmp_path), nats_url=nats_url, database_url=database_url
    )
    await engine.start()
    # Work orders committed before the relay leads are marked as possible replays, which
    # changes how executors treat them: tests start from a leading relay.
    await wait_for(engine.relay.leader.is_set, what="the relay to lead")
    yield engine
    await engine.stop()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await connect_as(nats_url)  # the session's engine credential
    yield client
    await client.drain()
