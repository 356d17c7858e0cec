"""One reconciliation loop per node of the dev stack: what `corridor up` runs (ADR 0163).

Each loop is that node's reconciler: it reports under the node's ``reconciler`` credential
(the only one allowed to publish ``recon.report.<node>``, ADR 0151), reaches the node through
its adapter, and reads the log as the database's read-only auditor role; the engine stores its
cursors. A pass the node or the engine could not finish is logged and tried again at the next
interval (``ReconciliationWorker.run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import structlog

from services.bus.jetstream import connect
from services.bus.nats_adapter import NatsBus
from services.eventstore.postgres import PostgresEventStore
from services.executor.nodes import adapter_for, resolve_node
from services.reconciliation.client import EngineReporter
from services.reconciliation.worker import PassConfig, ReconciliationWorker

log = structlog.get_logger("corridor.reconciliation")

# A pass in progress at stop is abandoned after this: its cursors did not move, so the next
# start repeats it, which finds nothing new.
STOP_TIMEOUT_S: Final = 10.0
# The loops share one small pool: one pass at a time per node, each a few queries.
POOL_MAX: Final = 2


class ReconcilerFleet:
    def __init__(
        self,
        *,
        nats_url: str,
        database_url: str,
        state_dir: Path,
        targets: Iterable[tuple[str, str]],
        creds: Mapping[str, Path],
        config_for: Any,
        interval_s: float,
    ) -> None:
        """``targets``: (region, node); ``creds``: each node's reconciler seed file;
        ``config_for(region) -> PassConfig``; ``database_url``: the auditor role's."""
        assert interval_s > 0, "interval_s must be positive"
        self._nats_url = nats_url
        self._database_url = database_url
        self._state_dir = state_dir
        self._targets = sorted(set(targets))
        self._creds = dict(creds)
        self._config_for = config_for
        self._interval_s = interval_s
        self._stop = asyncio.Event()
        self._store: PostgresEventStore | None = None
        self._closers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._store = await PostgresEventStore.connect(self._database_url, pool_max=POOL_MAX)
        try:
            for region, node in self._targets:
                await self._start_one(region, node, self._store)
        except BaseException:
            await self.stop()
            raise
        log.info("reconciler_fleet_started", nodes=[n for _, n in self._targets],
                 interval_s=self._interval_s)  # fmt: skip

    async def _start_one(self, region: str, node: str, store: PostgresEventStore) -> None:
        nc = await connect(self._nats_url, name=f"corridor-recon-{node}", creds=self._creds[node])
        self._closers.append(nc.close)
        uri = resolve_node(f"sim://{node}", region=region, state_dir=self._state_dir).uri
        adapter = adapter_for(uri)
        self._closers.append(adapter.close)
        config: PassConfig = self._config_for(region)
        worker = ReconciliationWorker(
            node=node, region=region, adapter=adapter, store=store,
            report=EngineReporter(NatsBus(nc), node=node),
            now_ms=lambda: time.time_ns() // 1_000_000, config=config,
        )  # fmt: skip
        self._tasks.append(
            asyncio.create_task(
                worker.run(interval_s=self._interval_s, stop=self._stop), name=f"recon-{node}"
            )
        )

    def status(self) -> list[dict[str, Any]]:
        """What `corridor up` lists in endpoints.json (``reconcilers``): each loop's node,
        region, interval and database role."""
        return [
            {"node": node, "region": region, "interval_s": self._interval_s,
             "database_role": "auditor"}
            for region, node in self._targets
        ]  # fmt: skip

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()
        if self._store is not None:
            await self._store.close()
        self._tasks.clear()
        self._closers.clear()
        self._store = None
