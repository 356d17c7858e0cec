"""Test harness: real nats-server (JetStream) and real PostgreSQL on free loopback ports.

``NATS_URL`` / ``DATABASE_URL`` point the suite at existing servers instead. Every test gets a
fresh database (created from a migrated template) and, unless NATS_URL is given, its own
nats-server, so tests never see each other's streams.

PostgreSQL takes passwords only (ADR 0064). The harness creates databases as the superuser,
migrates the template as ``corridor_owner``, and hands tests the engine's role's URL
(``database_url``); ``database_urls`` has every role's. A ``DATABASE_URL`` must name a superuser
of a throwaway server: the session (re)sets the Corridor roles' passwords there.

nats-server takes nkey users only (ADR 0060). The session makes an engine credential and sets
``CORRIDOR_CREDS`` to it, so every connect that names no credential (``connect(url)``, and a
test module's bare ``nats.connect(url)``) is the engine; every server the harness starts admits
it. With ``NATS_URL``, ``CORRIDOR_CREDS`` must name an engine credential of that server.
tests/nats_creds.py connects as another user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid

# The test process runs simulated lnd nodes (gRPC servers) and adapters in-process, and forks
# nats-server and PostgreSQL: gRPC's fork handlers then run in the child before its exec and
# can abort it (grpc/grpc#43055: "Check failed: next_worker->state == KICKED", the server
# dies with SIGSEGV). Each child execs at once and never uses gRPC, so the handlers are off.
# Set before anything imports grpc, which reads it once.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
import structlog
from hypothesis import settings as hypothesis_settings

from services.bus.jetstream import CREDS_ENV, credential_options
from services.devstack import DevStack
from services.devstack.nats import NatsServer
from services.eventstore.roles import (
    ROLES,
    RoleUrls,
    create_database,
    drop_database,
    ensure_roles,
    new_password,
)
from services.eventstore.roles import connect as connect_db
from services.identity import nats_auth
from services.identity.registry import Registry, load_registry, registry_path
from tests.nats_creds import IDENTITY_OPTIONS

hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# The suite's engine credential's id, in the session's registry.
HARNESS_ENGINE_ID = "harness"


@pytest.fixture(scope="session", autouse=True)
def identity_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's registry home: the harness's engine credential, ``CORRIDOR_CREDS`` for
    the whole session (unless the environment names one already, as with ``NATS_URL``)."""
    home = tmp_path_factory.mktemp("identity")
    given = os.environ.get(CREDS_ENV)
    with pytest.MonkeyPatch.context() as patch:
        if not given:
            seed = nats_auth.ensure(home, role="engine", ident=HARNESS_ENGINE_ID)
            patch.setenv(CREDS_ENV, str(seed))
        elif not os.environ.get("NATS_URL"):
            # The user's own key: the servers the harness starts admit it as the engine.
            key = nats_auth.read_public_key(Path(given))
            nats_auth.register_key(home, role="engine", ident=HARNESS_ENGINE_ID, public_key=key)
        _bare_connects_use_the_session_credential(patch)
        yield home


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """Whatever a test does to structlog's configuration (``configure_logging`` points it at a
    stream of the test's, e.g. a ``StringIO``) ends with the test: a later test that reads its
    logs from ``capsys`` would otherwise find them written into the earlier test's stream. The
    root logger's level is put back too; its handlers are pytest's own, added and removed
    around each phase, so they are left to pytest."""
    config, level = structlog.get_config(), logging.getLogger().level
    yield
    structlog.configure(**config)
    logging.getLogger().setLevel(level)


def session_registry(home: Path) -> Registry:
    """Who the harness's servers admit: the session's registry (the harness engine)."""
    return load_registry(registry_path(home))


def _bare_connects_use_the_session_credential(patch: pytest.MonkeyPatch) -> None:
    """A test module's ``nats.connect(url)`` that names no credential connects as
    ``CORRIDOR_CREDS``, as ``services.bus.jetstream.connect`` does. Only calls made from
    ``tests.*`` modules: production code that forgets its credential still fails here."""
    original = nats.connect

    async def connect(*args: Any, **options: Any) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("tests.") and not (set(IDENTITY_OPTIONS) & set(options)):
            options = {**credential_options(None), **options}
        return await original(*args, **options)

    patch.setattr(nats, "connect", connect)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory, identity_home: Path) -> Iterator[DevStack]:
    # fsync off: tests check behaviour, not durability across power loss. The cluster is not
    # kept: as root it may live outside the session's temp dir (ADR 0040).
    stack = DevStack(
        tmp_path_factory.mktemp("stack"), fsync=False, keep_data=False, identity_dir=identity_home
    )
    with stack:
        yield stack


@pytest.fixture(scope="session")
async def cluster_urls(servers: DevStack) -> RoleUrls:
    """Every role's URL on the session's PostgreSQL (for the dev stack's own database)."""
    if servers.database_urls is not None:
        return servers.database_urls
    passwords = {role: new_password() for role in ROLES}
    admin = await connect_db(servers.database_url)
    try:
        await ensure_roles(admin, passwords)
    finally:
        await admin.close()
    database = urlsplit(servers.database_url).path.lstrip("/") or "postgres"
    return RoleUrls.build(servers.database_url, database, passwords)


@pytest.fixture(scope="session")
async def template_db(cluster_urls: RoleUrls) -> str:
    name = f"corridor_tpl_{uuid.uuid4().hex[:8]}"
    await create_database(cluster_urls, name)  # migrated as the owner
    return name


@pytest.fixture
async def database_urls(cluster_urls: RoleUrls, template_db: str) -> AsyncIterator[RoleUrls]:
    """A fresh, migrated database: every role's URL for it."""
    name = f"corridor_t_{uuid.uuid4().hex[:12]}"
    urls = await create_database(cluster_urls, name, template=template_db)
    yield urls
    await drop_database(cluster_urls, name)


@pytest.fixture
def database_url(database_urls: RoleUrls) -> str:
    """A fresh, migrated database, as the engine connects to it (``corridor_engine``)."""
    return database_urls.engine


@pytest.fixture
async def nats_url(tmp_path: Path, identity_home: Path) -> AsyncIterator[str]:
    external = os.environ.get("NATS_URL")
    if external:
        nc = await nats.connect(external, **credential_options(None))
        js = nc.jetstream()
        for stream in ("CORRIDOR_CMD", "CORRIDOR_EVT", "CORRIDOR_DLQ", "CORRIDOR_DISPATCH"):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        await nc.close()
        yield external
        return
    server = NatsServer(
        tmp_path / "nats", registry=session_registry(identity_home), sync_interval="2m"
    )
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
