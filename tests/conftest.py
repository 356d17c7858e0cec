"""Test harness: real nats-server (JetStream) and real PostgreSQL on free loopback ports.

``NATS_URL`` / ``DATABASE_URL`` point the suite at existing servers instead. Every test gets a
fresh database (created from a migrated template) and, unless NATS_URL is given, its own
nats-server, so tests never see each other's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
from hypothesis import settings as hypothesis_settings

from services.devstack import DevStack
from services.devstack.nats import NatsServer
from services.eventstore.migrate import migrate

hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # fsync off: tests check behaviour, not durability across power loss. The cluster is not
    # kept: as root it may live outside the session's temp dir (ADR 0040).
    stack = DevStack(tmp_path_factory.mktemp("stack"), fsync=False, keep_data=False)
    with stack:
        yield stack


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
async def template_db(servers: DevStack) -> str:
    name = f"corridor_tpl_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(_with_database(servers.database_url, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return name


@pytest.fixture
async def database_url(servers: DevStack, template_db: str) -> AsyncIterator[str]:
    name = f"corridor_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    yield _with_database(servers.database_url, name)
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    external = os.environ.get("NATS_URL")
    if external:
        nc = await nats.connect(external)
        js = nc.jetstream()
        for stream in ("CORRIDOR_CMD", "CORRIDOR_EVT", "CORRIDOR_DLQ", "CORRIDOR_DISPATCH"):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        await nc.close()
        yield external
        return
    server = NatsServer(tmp_path / "nats", sync_interval="2m")
    await asyncio.to_thread(server.start)
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)


async def wait_for(
    condition: Callable[[], Awaitable[Any] | Any],
    *,
    timeout_s: float = 10.0,
    what: str = "condition",
) -> Any:
    """Poll ``condition`` until truthy; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)
