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

from services import tracing
from services.bootstrap import bootstrap
from services.cli.read_models import running_projections
from services.cli.stack_registry import registry_file, registry_lookup
from services.devstack import DevStack
from services.endpoints import add_entries, remove_entries
from services.metrics.wiring import engine_metrics
from services.settings import Settings, load_settings
from services.signing.file_keys import keys_dir, load_or_create_signer
from services.webhooks.running import running_dispatcher

log = structlog.get_logger("corridor.up")


async def run(args: argparse.Namespace) -> int:
    """The ``corridor up`` handler."""
    from services.logging import configure_logging

    settings = load_settings()
    if "webhooks_allow_loopback" not in settings.model_fields_set:
        # Everything of the dev stack runs on this machine, receivers too (ADR 0177).
        settings = settings.model_copy(update={"webhooks_allow_loopback": True})
    configure_logging(settings.log_level, cache=True)
    tracing.configure(settings.tracing_exporter)
    await run_up(
        settings, state_dir=args.state_dir, sim=not args.no_sim, topology=args.topology,
        seed=args.seed, http_port=args.http_port,
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
    http_port: int = 0,
) -> None:
    # The stack's own directory, for what the engine keeps there (the webhook key, ADR 0176).
    settings = settings.model_copy(update={"state_dir": state_dir})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Executors pay through the simulated network's nodes: one per node a corridor routes to.
    targets = _executor_targets(settings) if sim else []
    executor_creds = _make_credentials(state_dir, targets)
    stack = DevStack(state_dir / "servers", identity_dir=state_dir)
    await asyncio.to_thread(stack.start)
    engine = None
    sim_stack: Any = None
    fleet: Any = None
    reconcilers: Any = None
    # What this process wrote to endpoints.json: the only entries it removes (ADR 0020).
    endpoints: dict[str, Any] = {}
    exits = contextlib.AsyncExitStack()
    try:
        engine = await bootstrap(
            settings, nats_url=stack.nats_url, database_url=stack.database_url,
            creds=stack.engine_creds, **registry_lookup(stack, settings),
            signer=load_or_create_signer(keys_dir(state_dir)),
        )  # fmt: skip
        await engine.start()
        # The read models the CLI answers from, kept at the log's head (ADR 0152).
        await exits.enter_async_context(
            running_projections(nats_url=stack.nats_url, database_url=stack.database_url,
                                creds=stack.engine_creds)
        )  # fmt: skip
        await exits.enter_async_context(running_dispatcher(engine, settings))  # ADR 0175
        # /metrics, /healthz and /readyz for the whole process (ADR 0153).
        metrics = await exits.enter_async_context(
            engine_metrics(engine, settings, nats_url=stack.nats_url,
                           database_url=stack.database_url, creds=stack.engine_creds,
                           registry_file=registry_file(stack, settings))
        )  # fmt: skip
        endpoints = {
            **stack.nats_endpoints(),
            "metrics_url": metrics.url,
            "database_url": stack.database_url,
            "pid": os.getpid(),
            "started_at_ms": time.time_ns() // 1_000_000,
            "network": settings.network,
        }
        # The HTTP API (ADR 0174), as the stack's gateway credential (ADR 0172).
        endpoints["http_url"] = await _serve_http(exits, stack, settings, http_port)
        if sim:
            sim_stack = await _start_sim(state_dir, topology, seed)
            endpoints.update(sim_stack.endpoints())
        path = add_entries(state_dir, endpoints)
        if sim:
            # One executor per (region, node) the corridors route to, paying through the sim.
            from services.executor.fleet import ExecutorFleet
            from services.lsps.lsps2_server import menu_from_settings

            fleet = ExecutorFleet(
                nats_url=stack.nats_url, state_dir=state_dir, targets=targets,
                creds=executor_creds, jit_lsp_nodes=settings.jit_lsp_nodes,
                jit_menu=menu_from_settings(settings.jit_fee_menu),
            )  # fmt: skip
            await fleet.start()
            reconcilers = await _start_reconcilers(settings, stack, state_dir, targets)
            if reconcilers is not None:
                listed = {"reconcilers": reconcilers.status()}
                add_entries(state_dir, listed)
                endpoints.update(listed)
        log.info("corridor_ready", endpoints=str(path), nats_url=stack.nats_url)
        if ready_line:
            print(f"corridor is up; endpoints in {path}. Ctrl-C to stop.", flush=True)
        await stop.wait()
    finally:
        log.info("corridor_stopping")
        if reconcilers is not None:
            with contextlib.suppress(Exception):
                await reconcilers.stop()
        if fleet is not None:
            with contextlib.suppress(Exception):
                await fleet.stop()
        if sim_stack is not None:
            with contextlib.suppress(Exception):
                await sim_stack.stop()
        with contextlib.suppress(Exception):
            await exits.aclose()
        if engine is not None:
            await engine.stop()
        await asyncio.to_thread(stack.stop)
        if endpoints:
            remove_entries(state_dir, endpoints)


def _executor_targets(settings: Settings) -> list[tuple[str, str]]:
    from services.executor.fleet import targets_from_corridors

    return targets_from_corridors(settings.corridors)


def _make_credentials(state_dir: Path, targets: list[tuple[str, str]]) -> dict[str, Path]:
    """The credentials this stack's users start with (ADR 0060): caller ``local``, operators
    ``operator-1`` and ``operator-2``, auditor ``auditor-1``, and one executor per node in
    ``targets`` (its seed file by node). The dev stack makes the engine's own. Existing ones
    are kept.

    Under NATS_URL the server is someone else's: nothing is made here, and every connection
    this process opens uses CORRIDOR_CREDS, which must then name an engine credential.
    """
    from services.cli.credentials import STACK_CREDENTIALS
    from services.cli.errors import UsageError
    from services.identity import nats_auth

    if os.environ.get("NATS_URL"):
        if not os.environ.get("CORRIDOR_CREDS"):
            raise UsageError(
                "NATS_URL names a server `corridor up` does not run: set CORRIDOR_CREDS to "
                "an engine credential's seed file for it"
            )
        return {}
    for role, ident, kind in STACK_CREDENTIALS:
        # Each with its HTTP API key beside its seed (`<seed>.http`, ADR 0171).
        nats_auth.ensure(state_dir, role=role, ident=ident, kind=kind, api_key=True)  # type: ignore[arg-type]
    nats_auth.ensure(state_dir, role="gateway", ident="http")
    for region, node in targets:
        # Each node's reconciler: the loop `corridor up` runs and `corridor recon run` (ADR 0151).
        nats_auth.ensure(state_dir, role="reconciler", ident=node, region=region, node=node)
    return {
        node: nats_auth.ensure(state_dir, role="executor", ident=node, region=region, node=node)
        for region, node in targets
    }


async def _start_reconcilers(
    settings: Settings, stack: DevStack, state_dir: Path, targets: list[tuple[str, str]]
) -> Any:
    """One reconciliation loop per node (ADR 0163), reading the log as the auditor role;
    ``None`` when this process made no credentials (NATS_URL) or runs no database of its own
    (DATABASE_URL: the auditor's URL is not known here)."""
    if os.environ.get("NATS_URL") or stack.database_urls is None or not targets:
        log.info("reconcilers_not_started", reason="the stack's servers are given, not run here")
        return None
    from services.cli.recon import pass_config
    from services.identity import nats_auth
    from services.reconciliation.fleet import ReconcilerFleet

    creds = {
        node: nats_auth.ensure(state_dir, role="reconciler", ident=node, region=region, node=node)
        for region, node in targets
    }
    reconcilers = ReconcilerFleet(
        nats_url=stack.nats_url, database_url=stack.database_urls.auditor, state_dir=state_dir,
        targets=targets, creds=creds, config_for=lambda region: pass_config(settings, region),
        interval_s=settings.reconciliation_interval_s,
    )  # fmt: skip
    await reconcilers.start()
    return reconcilers


async def _serve_http(
    exits: contextlib.AsyncExitStack, stack: DevStack, settings: Settings, port: int
) -> str:
    from services.http.cli import gateway_creds
    from services.http.server import serving

    state_dir = settings.state_dir
    registry = registry_file(stack, settings)
    assert registry is not None, "the engine refused to start without a registry"
    served = await exits.enter_async_context(
        serving(nats_url=stack.nats_url, database_url=stack.database_url,
                registry_file=registry, port=port,
                creds=gateway_creds(state_dir) or stack.engine_creds, state_dir=state_dir)
    )  # fmt: skip
    return served.url


async def _start_sim(state_dir: Path, topology: Path | None, seed: int) -> Any:
    from services.sim.runner import SimStack

    sim_stack = SimStack(state_dir=state_dir / "sim", topology_path=topology, seed=seed)
    await sim_stack.start()
    return sim_stack
