"""``corridor projections run|rebuild|status``: the read models (ADR 0152).

``run`` keeps every projection at the log's head, woken by the engine's events on
``CORRIDOR_EVT`` (``corridor up`` runs the same loop in its process). ``rebuild`` folds the whole
log into shadow rows and swaps them in; ``rebuild --check`` proves instead that a rebuild would
equal the live rows, and exits 3 naming the rows that differ. ``status`` shows each
projection's position against the log's head.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from projections.runner import ProjectionRunner

GROUP_HELP: Final = "read models: keep them live, rebuild them (or prove rebuild equals live)"
# `/readyz` of `projections run` fails when no step reached the head for this long. The runner
# steps at least every second; a minute leaves room for a long first catch-up batch and a
# database restart, and still shows a wedged loop within a probe period or two.
STEP_STALE_S: Final = 60.0


def register(subparsers: Any) -> None:
    from projections.catalog import BY_NAME
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("projections", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="projections_command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="keep every projection at the log's head until Ctrl-C")
    state_dir_option(run)
    run.set_defaults(handler="services.cli.read_models:run")

    rebuild = sub.add_parser(
        "rebuild",
        help="rebuild from the log into shadow rows and swap them in; --check: prove a rebuild "
        "equals live (exit 3 if not)",
    )
    rebuild.add_argument(
        "--check", action="store_true", help="compare only; change nothing (exit 3 on a difference)"
    )
    rebuild.add_argument(
        "--name", choices=sorted(BY_NAME), help="one projection (default: every one)"
    )
    state_dir_option(rebuild, creds=False)
    json_option(rebuild, "the result per projection")
    rebuild.set_defaults(handler="services.cli.read_models:rebuild")

    status = sub.add_parser("status", help="each projection's position against the log's head")
    state_dir_option(status, creds=False)
    json_option(status, "the positions")
    status.set_defaults(handler="services.cli.read_models:status")


async def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from services.endpoints import find_stack
    from services.metrics.freshness import finished_within
    from services.metrics.server import MetricsServer
    from services.settings import load_settings

    stack = find_stack(args.state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = load_settings()
    async with running_projections(
        nats_url=stack.nats_url, database_url=stack.database_url
    ) as runner:
        # /metrics, /healthz, and /readyz that fails once the runner stops stepping (a probe
        # for compose and k8s; ADR 0153).
        metrics = MetricsServer.start(
            host=settings.metrics_host, port=settings.metrics_port,
            ready=finished_within(lambda: runner.last_step_at, max_age_s=STEP_STALE_S,
                                  what="projection step"),
        )  # fmt: skip
        print(f"projections running (probes on {metrics.url}); Ctrl-C to stop.", flush=True)
        try:
            await stop.wait()
        finally:
            metrics.stop()
    return 0


@contextlib.asynccontextmanager
async def running_projections(
    *, nats_url: str, database_url: str, creds: Path | None = None
) -> AsyncIterator[ProjectionRunner]:
    """The projection runner as a task, woken by every event on ``CORRIDOR_EVT`` (a core
    subscription; the runner also steps every second without one). ``corridor up`` runs it."""
    import asyncio

    from projections.catalog import ALL
    from projections.runner import ProjectionRunner
    from services.bus import subjects
    from services.bus.jetstream import connect
    from services.eventstore.postgres import PostgresEventStore

    store = await PostgresEventStore.connect(database_url, pool_max=2)
    nc = None
    stop = asyncio.Event()
    task = None
    try:
        nc = await connect(nats_url, name="corridor-projections", creds=creds)
        runner = ProjectionRunner(store.pool, ALL)

        async def woken(_msg: Any) -> None:
            runner.wake()

        await nc.subscribe(subjects.EVT_WILDCARD, cb=woken)
        task = asyncio.create_task(runner.run(stop), name="projections")
        yield runner
    finally:
        stop.set()
        if task is not None:
            await task
        if nc is not None:
            await nc.close()
        await store.close()


async def rebuild(args: argparse.Namespace) -> int:
    from projections import runner
    from projections.catalog import ALL, BY_NAME
    from services.cli import exit_codes, output
    from services.endpoints import find_stack
    from services.eventstore.postgres import PostgresEventStore

    chosen = [BY_NAME[args.name]] if args.name else list(ALL)
    stack = find_stack(args.state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    results: list[dict[str, Any]] = []
    try:
        for projection in chosen:
            if args.check:
                checked = await runner.check(store.pool, projection)
                results.append({"projection": checked.projection, "position": checked.position,
                                "rows": checked.rows, "equal": checked.equal,
                                "differences": checked.differences,
                                "shown": checked.shown})  # fmt: skip
            else:
                rebuilt = await runner.rebuild(store.pool, projection)
                results.append({"projection": rebuilt.projection, "position": rebuilt.position,
                                "rows": rebuilt.rows})  # fmt: skip
    finally:
        await store.close()
    if args.json:
        output.print_json(results)
    else:
        for r in results:
            if not args.check:
                print(f"{r['projection']}: rebuilt {r['rows']} row(s) at position {r['position']}")
            elif r["equal"]:
                print(f"{r['projection']}: rebuild equals live ({r['rows']} row(s) at position "
                      f"{r['position']})")  # fmt: skip
            else:
                print(f"{r['projection']}: {r['differences']} row(s) differ from a rebuild at "
                      f"position {r['position']}:")  # fmt: skip
                for d in r["shown"]:
                    print(f"  {d['key']}: {d['problem']}")
    if args.check and not all(r["equal"] for r in results):
        return exit_codes.VERIFICATION_FAILED
    return exit_codes.OK


async def status(args: argparse.Namespace) -> int:
    from projections.store import ProjectionStore
    from services.cli import output
    from services.endpoints import find_stack
    from services.eventstore.postgres import PostgresEventStore

    stack = find_stack(args.state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    try:
        lags = await ProjectionStore(store.pool).lag()
    finally:
        await store.close()
    rows = [{"projection": g.projection, "position": g.position, "head": g.head,
             "behind": g.behind} for g in lags]  # fmt: skip
    if args.json:
        output.print_json(rows)
    else:
        output.print_table(
            ["PROJECTION", "POSITION", "HEAD", "BEHIND"],
            [[r["projection"], r["position"], r["head"], r["behind"]] for r in rows],
        )
    return 0
