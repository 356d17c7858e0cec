"""``corridor up``: servers, engine and (by default) the simulated network, until a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import structlog

from services.bootstrap import bootstrap
from services.devstack import DevStack
from services.endpoints import add_entries, remove_entries
from services.settings import Settings, load_settings

log = structlog.get_logger("corridor.up")


async def run(args: argparse.Namespace) -> int:
    """The ``corridor up`` handler."""
    from services.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, cache=True)
    await run_up(
        settings, state_dir=args.state_dir, sim=not args.no_sim, topology=args.topology,
        seed=args.seed,
    )  # fmt: skip
    return 0


async def run_up(
    settings: Settings,
    *,
    state_dir: Path,
    sim: bool,
    topology: Path | None,
    seed: int,
    ready_line: bool = True,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = DevStack(state_dir / "servers")
    await asyncio.to_thread(stack.start)
    engine = None
    sim_stack: Any = None
    fleet: Any = None
    # What this process wrote to endpoints.json: the only entries it removes (ADR 0020).
    endpoints: dict[str, Any] = {}
    try:
        engine = await bootstrap(settings, nats_url=stack.nats_url, database_url=stack.database_url)
        await engine.start()
        endpoints = {
            "nats_url": stack.nats_url,
            "database_url": stack.database_url,
            "pid": os.getpid(),
            "started_at_ms": time.time_ns() // 1_000_000,
            "network": settings.network,
        }
        if sim:
            sim_stack = await _start_sim(state_dir, topology, seed)
            endpoints.update(sim_stack.endpoints())
        path = add_entries(state_dir, endpoints)
        if sim:
            # One executor per (region, node) the corridors route to, paying through the sim.
            from services.executor.fleet import ExecutorFleet, targets_from_corridors

            fleet = ExecutorFleet(
                nats_url=stack.nats_url, state_dir=state_dir,
                targets=targets_from_corridors(settings.corridors),
            )  # fmt: skip
            await fleet.start()
        log.info("corridor_ready", endpoints=str(path), nats_url=stack.nats_url)
        if ready_line:
            print(f"corridor is up; endpoints in {path}. Ctrl-C to stop.", flush=True)
        await stop.wait()
    finally:
        log.info("corridor_stopping")
        if fleet is not None:
            with contextlib.suppress(Exception):
                await fleet.stop()
        if sim_stack is not None:
            with contextlib.suppress(Exception):
                await sim_stack.stop()
        if engine is not None:
            await engine.stop()
        await asyncio.to_thread(stack.stop)
        if endpoints:
            remove_entries(state_dir, endpoints)


async def _start_sim(state_dir: Path, topology: Path | None, seed: int) -> Any:
    from services.sim.runner import SimStack

    sim_stack = SimStack(state_dir=state_dir / "sim", topology_path=topology, seed=seed)
    await sim_stack.start()
    return sim_stack
