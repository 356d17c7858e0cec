"""Serve the HTTP API inside a running event loop: ``corridor up`` (beside the engine) and
``corridor http`` (alone) both use ``serving``.

uvicorn runs as a task on the caller's loop. Its ``Server.serve`` would install its own SIGINT
and SIGTERM handlers and re-raise the signal when it stops, taking the signals away from
``corridor up``; ``_EmbeddedServer`` leaves signals to the process that embeds it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog
import uvicorn

from projections.store import ProjectionStore
from services.http.app import HttpDeps, build_app
from services.http.gateway import Gateway
from services.identity.lookup import RegistryFile

log = structlog.get_logger("corridor.http")

DEFAULT_HOST: Final = "127.0.0.1"
# Reads of the projection tables; a handful is plenty for an edge that forwards commands.
DB_POOL_MAX: Final = 4
STARTUP_TIMEOUT_S: Final = 10.0
SHUTDOWN_TIMEOUT_S: Final = 5.0


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class Served:
    url: str
    deps: HttpDeps


@contextlib.asynccontextmanager
async def serving(
    *,
    nats_url: str,
    database_url: str,
    registry_file: Path,
    creds: Path | None,
    host: str = DEFAULT_HOST,
    port: int = 0,
    extra: tuple[Any, ...] = (),
    state_dir: Path | None = None,
) -> AsyncIterator[Served]:
    """The API on ``host``:``port`` (0: a free port) until the block ends; yields its URL."""
    from services.bus.jetstream import connect
    from services.eventstore.postgres import PostgresEventStore
    from services.liquidity.feed import LiquidityFeed

    nc = await connect(nats_url, name="corridor-http", creds=creds)
    store = None
    try:
        store = await PostgresEventStore.connect(database_url, pool_max=DB_POOL_MAX)
        deps = HttpDeps(
            gateway=Gateway(nc),
            projections=ProjectionStore(store.pool),
            registry=RegistryFile(registry_file),
            events=store,
            state_dir=state_dir,
            liquidity=LiquidityFeed.from_settings(),
        )
        await deps.node_health.start(nc)
        await deps.liquidity.start(nc)
        async with _served(build_app(deps, extra=extra), host, port) as url:
            log.info("http_serving", url=url)
            yield Served(url=url, deps=deps)
    finally:
        if store is not None:
            await store.close()
        await nc.close()


@contextlib.asynccontextmanager
async def _served(app: Any, host: str, port: int) -> AsyncIterator[str]:
    config = uvicorn.Config(
        # No access log (it would print every request line, Authorization aside, in uvicorn's
        # text format); uvicorn's own notices only from warnings up: `http_serving` says the
        # rest as a JSON line.
        app, host=host, port=port, log_config=None, log_level="warning", access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_S),
    )  # fmt: skip
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="corridor-http")
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it (e.g. the port is taken)
                    raise RuntimeError("the HTTP server stopped while starting")
                await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
