"""What a process does to serve its metrics: register its collectors, sample, serve, undo.

``engine_metrics`` is the engine's (``corridor up``, ``corridor engine``): the commit observer,
the health board, the sampled series and the server. An executor or a standalone runner serves
the process-level series with ``MetricsServer`` alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from services.metrics.engine_view import HealthBoardCollector, observe_commits
from services.metrics.sampled import SampledCollector, jetstream_consumers
from services.metrics.server import MetricsServer

if TYPE_CHECKING:
    from services.bootstrap import Engine
    from services.settings import Settings

# Readiness: the sample is this many intervals old at most (the database answers).
READY_SAMPLE_INTERVALS: Final = 3


def _liquidity(engine: Engine, settings: Settings) -> Collector:
    from services.liquidity.config import targets_from
    from services.liquidity.metrics import LiquidityCollector

    return LiquidityCollector(engine.health, targets_from(settings))


@contextlib.asynccontextmanager
async def engine_metrics(
    engine: Engine,
    settings: Settings,
    *,
    nats_url: str,
    database_url: str,
    creds: Path | None = None,
    registry_file: Path | None = None,
) -> AsyncIterator[MetricsServer]:
    from services.bus import subjects
    from services.bus.jetstream import connect
    from services.eventstore.postgres import PostgresEventStore

    engine.committed.subscribe("metrics", observe_commits)
    board = HealthBoardCollector(engine.health)
    store = await PostgresEventStore.connect(database_url, pool_max=2)
    nc = await connect(nats_url, name="corridor-metrics", creds=creds)
    sampled = SampledCollector(
        store.pool, stuck_after_s=settings.metrics_stuck_after_s,
        consumers=jetstream_consumers(nc.jetstream(), subjects.DISPATCH_STREAM),
        interval_s=settings.metrics_sample_s,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(sampled.run(stop), name="metrics-sampler")
    collectors: list[Collector] = [board, sampled, _liquidity(engine, settings)]
    if registry_file is not None:
        from services.identity.lookup import RegistryFile
        from services.metrics.credentials import CredentialExpiryCollector

        collectors.append(CredentialExpiryCollector(RegistryFile(registry_file)))
    for collector in collectors:
        REGISTRY.register(collector)
    stale_s = settings.metrics_sample_s * READY_SAMPLE_INTERVALS

    def ready() -> str | None:
        age_s = sampled.sample_age_s()
        return None if age_s <= stale_s else f"no fresh sample of the database ({age_s:.0f} s)"

    server = MetricsServer.start(host=settings.metrics_host, port=settings.metrics_port,
                                 ready=ready)  # fmt: skip
    try:
        yield server
    finally:
        server.stop()
        for collector in collectors:
            REGISTRY.unregister(collector)
        stop.set()
        await task
        await nc.close()
        await store.close()
