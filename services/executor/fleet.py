"""Several in-process executors, one per (region, node): what `corridor up` and the demo run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import structlog

from services.domain.jit_channels.fees import FeeMenuEntry
from services.executor.limits import ExecutorLimits
from services.executor.runner import build_executor
from services.executor.worker import Executor
from services.lsps.lsps2_server import DEFAULT_MENU

log = structlog.get_logger("corridor.fleet")

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class ExecutorFleet:
    def __init__(
        self,
        *,
        nats_url: str,
        state_dir: Path,
        targets: Iterable[tuple[str, str]],
        limits: ExecutorLimits | None = None,
        creds: Mapping[str, Path] | None = None,
        jit_lsp_nodes: Sequence[str] = (),
        jit_menu: Sequence[FeeMenuEntry] = DEFAULT_MENU,
    ) -> None:
        """``creds``: each node's executor seed file (default: as ``build_executor``)."""
        self._nats_url = nats_url
        self._creds = dict(creds or {})
        self._state_dir = state_dir
        self._targets = sorted(set(targets))
        self._limits = limits
        self._jit_lsp_nodes = tuple(jit_lsp_nodes)  # our LSP nodes (ADR 0261)
        self._jit_menu = tuple(jit_menu)
        self.executors: list[Executor] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for region, node in self._targets:
            executor = build_executor(
                nats_url=self._nats_url, region=region, node_uri=f"sim://{node}",
                state_dir=self._state_dir, node_name=node, limits=self._limits,
                executor_id=f"{region}-{node}-fleet", creds=self._creds.get(node),
                jit_lsp_nodes=self._jit_lsp_nodes, jit_menu=self._jit_menu,
            )  # fmt: skip
            self.executors.append(executor)
            self._tasks.append(asyncio.create_task(executor.run(), name=f"executor-{node}"))
        waits = [asyncio.create_task(e.ready.wait()) for e in self.executors]
        _, pending = await asyncio.wait(waits, timeout=READY_TIMEOUT_S)
        for task in pending:
            task.cancel()
        if pending:
            await self.stop()
            raise TimeoutError(f"{len(pending)} executors did not become ready")
        log.info("executor_fleet_ready", executors=len(self.executors))

    async def stop(self) -> None:
        for executor in self.executors:
            executor.stop()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for executor in self.executors:
            with contextlib.suppress(Exception):
                await executor.close_node()
        self.executors.clear()
        self._tasks.clear()


def targets_from_corridors(corridors: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Every (region, node) that some corridor may route to."""
    found = set()
    for candidates in corridors.values():
        for entry in candidates:
            region, _, node = entry.partition("/")
            found.add((region, node or f"{region}-lnd"))
    return sorted(found)
