"""``corridor recon run|list|resolve|clear``: reconciliation against the nodes' records.

``run`` makes one pass per node (ADR 0151): it reads the node through its adapter and the log
from PostgreSQL, and reports what disagrees to the engine as the node's reconciler (its
credential: ``corridor creds add --role reconciler --region R --node N``). ``list`` reads the
open items and tripped breakers from the log. ``resolve`` and ``clear`` are operator commands,
recorded in the log with the operator's identity and reason.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, Final

GROUP_HELP: Final = "reconciliation with the nodes' records: run a pass, list, resolve, clear"
_OPERATOR_ROLES: Final = ("operator",)
# `recon run --every S` is not ready once no pass finished for 2 S plus this: one failed pass
# (a node briefly away) is tolerated, a loop stuck on a node that never answers is not.
PASS_GRACE_S: Final = 60.0


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("recon", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="recon_command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="one pass over a node (or every node of the stack)")
    run.add_argument(
        "--node",
        metavar="NAME|URI",
        help="a simulated node's name, or lnd://... / cln://... with --region "
        "(default: every node in STATE_DIR/endpoints.json)",
    )
    run.add_argument("--region", help="the node's region (needed for lnd:// and cln://)")
    run.add_argument("--node-name", help="the node's name in the corridor table (URIs)")
    run.add_argument(
        "--every",
        type=float,
        metavar="S",
        help="keep running: a pass every S seconds until Ctrl-C (default: one pass)",
    )
    state_dir_option(run)
    json_option(run, "the findings")
    run.set_defaults(handler="services.cli.recon:run_pass")

    listing = sub.add_parser("list", help="open reconciliation items and tripped breakers")
    state_dir_option(listing, creds=False)
    json_option(listing, "the items")
    listing.set_defaults(handler="services.cli.recon:list_items")

    for verb, what in (
        ("resolve", "close one open item with the reason (and evidence) you checked"),
        ("clear", "let a node whose breaker tripped send again, with the reason"),
    ):
        action = sub.add_parser(verb, help=what, description=what)
        action.add_argument("node", metavar="NODE", help="the node")
        if verb == "resolve":
            action.add_argument("key", metavar="KEY", help="the item's key (recon list)")
        action.add_argument("--reason", required=True, help="why, recorded in the log")
        if verb == "resolve":
            action.add_argument(
                "--evidence", metavar="FILE_OR_TEXT",
                help="what you checked (a file's contents, or the text), kept in the event",
            )  # fmt: skip
        action.add_argument(
            "--operator-id", metavar="OP", help="who acts (default: the credential's operator)"
        )
        state_dir_option(action)
        json_option(action)
        action.set_defaults(handler=f"services.cli.recon:{verb}")


async def run_pass(args: argparse.Namespace) -> int:
    from services.cli import output
    from services.cli.errors import UsageError
    from services.endpoints import DEFAULT_STATE_DIR
    from services.logging import configure_logging
    from services.settings import Settings

    settings = Settings()
    # Log lines go to stderr: stdout is the findings (tables, or JSON with --json).
    configure_logging(settings.log_level, stream=sys.stderr)
    targets = _targets(args, args.state_dir or DEFAULT_STATE_DIR)
    if args.every is not None and (args.every <= 0 or len(targets) != 1):
        raise UsageError("--every needs a positive S and one --node")
    results = [
        await pass_over(args.state_dir, settings, target,
                        creds=_reconciler_creds(args, target[1]), every_s=args.every)
        for target in targets
    ]  # fmt: skip
    rows: list[dict[str, Any]] = [
        {"node": r.node, "category": str(m.category), "payment_hash": m.payment_hash,
         "intent_id": m.intent_id, "evidence": m.evidence}
        for r in results for m in r.mismatches
    ]  # fmt: skip
    if args.json:
        output.print_json(rows)
        return 0
    for r in results:
        print(f"{r.node}: {r.listed} listed, {r.looked_up} looked up, "
              f"{len(r.mismatches)} mismatches ({r.new_items} new)")  # fmt: skip
    if rows:
        output.print_table(
            ["NODE", "CATEGORY", "HASH", "INTENT"],
            [[r["node"], r["category"], r["payment_hash"][:16], r["intent_id"] or "-"]
             for r in rows],
        )  # fmt: skip
    return 0


async def pass_over(
    state_dir: Any, settings: Any, target: tuple[str, str, str], *, creds: Any,
    every_s: float | None = None,
) -> Any:  # fmt: skip
    """One pass over ``target`` (region, node name, adapter URI) as that node's reconciler
    (``creds``); with ``every_s``, a pass every ``every_s`` seconds until Ctrl-C first."""
    from services.bus.nats_adapter import NatsBus
    from services.cli.engine import connect
    from services.endpoints import find_stack
    from services.eventstore.postgres import PostgresEventStore
    from services.executor.nodes import adapter_for
    from services.reconciliation.client import EngineReporter
    from services.reconciliation.worker import ReconciliationWorker

    region, name, uri = target
    stack = find_stack(state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    # Each node's reconciler reports under its own credential (ADR 0151).
    nc = await connect(stack.nats_url, name="corridor-recon", creds=creds)
    adapter = adapter_for(uri)
    try:
        worker = ReconciliationWorker(
            node=name, region=region, adapter=adapter, store=store,
            report=EngineReporter(NatsBus(nc), node=name),
            now_ms=lambda: time.time_ns() // 1_000_000, config=pass_config(settings, region),
        )  # fmt: skip
        if every_s is not None:
            # /metrics, /healthz, and /readyz that fails once passes stop finishing (ADR 0153).
            from services.metrics.freshness import finished_within
            from services.metrics.server import MetricsServer

            metrics = MetricsServer.start(
                host=settings.metrics_host, port=settings.metrics_port,
                ready=finished_within(lambda: worker.last_pass_at,
                                      max_age_s=2 * every_s + PASS_GRACE_S,
                                      what="reconciliation pass"),
            )  # fmt: skip
            print(f"reconciling {name} every {every_s:g} s (probes on {metrics.url})",
                  file=sys.stderr, flush=True)  # fmt: skip
            try:
                await worker.run(interval_s=every_s, stop=asyncio.Event())
            finally:
                metrics.stop()
        return await worker.run_once()
    finally:
        await adapter.close()
        await nc.close()
        await store.close()


def _reconciler_creds(args: argparse.Namespace, node: str) -> Any:
    return reconciler_creds(args.state_dir, node, explicit=args.creds)


def reconciler_creds(state_dir: Any, node: str, *, explicit: Any = None) -> Any:
    """``explicit`` (``--creds``), else ``CORRIDOR_CREDS``, else the reconciler credential
    `corridor up` made for ``node`` in STATE_DIR/auth/."""
    import os
    from pathlib import Path

    from services.bus.jetstream import CREDS_ENV
    from services.cli.credentials import home_of
    from services.identity.nats_auth import seed_path

    if explicit is not None:
        return explicit
    if os.environ.get(CREDS_ENV):
        return Path(os.environ[CREDS_ENV])
    home = home_of(state_dir)
    made = None if home is None else seed_path(home, "reconciler", node)
    return made if made is not None and made.exists() else None


def pass_config(settings: Any, region: str) -> Any:
    from services.reconciliation.worker import PassConfig

    return PassConfig(
        in_flight_bound_ms=settings.reconciliation_in_flight_bound_s * 1000,
        lookback_ms=settings.reconciliation_lookback_s * 1000,
        page_max=settings.reconciliation_page_max,
        pages_max=settings.reconciliation_pages_max,
        trip_breaker=region in settings.reconciliation_breaker_regions,
    )


def _targets(args: argparse.Namespace, state_dir: Any) -> list[tuple[str, str, str]]:
    """(region, node name, adapter URI) of each node to reconcile."""
    import json

    from services.cli.errors import UsageError
    from services.executor.nodes import resolve_node

    if args.node and "://" in args.node:
        if not args.region:
            raise UsageError("a node URI needs --region")
        resolved = resolve_node(args.node, region=args.region, state_dir=state_dir,
                                name=args.node_name)  # fmt: skip
        return [(args.region, resolved.name, resolved.uri)]
    try:
        listed = json.loads((state_dir / "endpoints.json").read_text()).get("nodes", [])
    except (OSError, ValueError) as exc:
        raise UsageError(f"no simulated nodes listed in {state_dir}: {exc}") from None
    ours = [n for n in listed if n.get("role") == "ours" and n.get("region")]
    if args.node:
        ours = [n for n in ours if n["name"] == args.node]
        if not ours:
            raise UsageError(f"{state_dir}/endpoints.json lists no node of ours {args.node!r}")
    return [
        (n["region"], n["name"],
         resolve_node(f"sim://{n['name']}", region=n["region"], state_dir=state_dir).uri)
        for n in ours
    ]  # fmt: skip


async def open_items(state_dir: Any) -> dict[str, Any]:
    """``{"items": [...], "breakers": [...]}``: open reconciliation items and tripped breakers,
    from the projection tables (ADR 0152)."""
    from services.cli.projection_reads import projection_store

    async with projection_store(state_dir) as reader:
        docs = await reader.reconciliation_docs(open_only=True)
    return {
        "items": [
            {"node": d["node"], "region": d["region"], "key": d["key"], "category": d["category"],
             "payment_hash": d["payment_hash"], "intent_id": d["intent_id"],
             "attempt": d["attempt"], "since_ms": d["found_at_ms"], "evidence": d["evidence"]}
            for d in docs if d["kind"] == "item"
        ],
        "breakers": sorted(
            ({"node": d["node"], "region": d["region"], "key": d["key"],
              "since_ms": d["tripped_at_ms"]} for d in docs if d["kind"] == "breaker"),
            key=lambda b: b["node"],
        ),
    }  # fmt: skip


async def list_items(args: argparse.Namespace) -> int:
    from services.cli import output

    view = await open_items(args.state_dir)
    if args.json:
        output.print_json(view)
        return 0
    for breaker in view["breakers"]:
        print(f"breaker tripped: {breaker['node']} ({breaker['region']}) since "
              f"{output.utc(breaker['since_ms'])}, by {breaker['key']}")  # fmt: skip
    if not view["items"]:
        print("no open reconciliation items")
        return 0
    output.print_table(
        ["NODE", "CATEGORY", "KEY", "INTENT", "SINCE"],
        [[i["node"], i["category"], i["key"], i["intent_id"] or "-", output.utc(i["since_ms"])]
         for i in view["items"]],
    )  # fmt: skip
    return 0


async def resolve(args: argparse.Namespace) -> int:
    from services.cli.exception_actions import evidence_text

    body = {"type": "ResolveReconciliationMismatch", "key": args.key,
            "evidence": evidence_text(args.evidence)}  # fmt: skip
    return await _operator(args, "resolve", body)


async def clear(args: argparse.Namespace) -> int:
    return await _operator(args, "clear", {"type": "ClearNodeBreaker"})


async def _operator(args: argparse.Namespace, verb: str, body: dict[str, Any]) -> int:
    from services.bus import subjects
    from services.cli.engine import EngineClient
    from services.cli.errors import UsageError
    from services.cli.intents import show_reply

    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR_ROLES, args.operator_id)
        if not operator:
            raise UsageError("say who acts: --operator-id OP (no credential names one)")
        body |= {"version": 1, "node": args.node, "operator_id": args.operator_id or operator,
                 "reason": args.reason}  # fmt: skip
        reply = await engine.request(f"{subjects.RECON_API_PREFIX}.{verb}.{operator}", body)
    return show_reply(reply, as_json=args.json)
