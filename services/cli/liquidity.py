"""``corridor liquidity``: every channel of our nodes per region, with targets and alerts.

It listens to the executors' channel snapshots (ADR 0240) as an operator until every node of
the corridor table has been heard (or ``--wait-s`` passes), and judges them against the
targets in settings (ADR 0241); the outflow forecast comes from the intent projection.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Final

GROUP_HELP: Final = "channels and liquidity of our nodes per region, with targets and alerts"
# One health interval is when every executor has published once; two tolerate one lost message.
WAIT_S_DEFAULT: Final = 10.0
WAIT_S_MAX: Final = 120.0
# `plan --every S`: at least a second apart (snapshots come every 5 s; faster plans on stale
# figures), at most a day; /readyz fails once no round finished for 2 S plus the grace.
ROUND_S_MIN: Final = 1.0
ROUND_S_MAX: Final = 86_400.0
ROUND_GRACE_S: Final = 60.0
PLAN_HELP: Final = "propose rebalances within the day's fee budget (recorded, dry run) or --auto"
# The planner's caller (kind service): the rebalances' owner (ADR 0244, 0246).
PLANNER_CALLER: Final = "liquidity-planner"


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("liquidity", help=GROUP_HELP, description=GROUP_HELP)
    group.add_argument(
        "--wait-s", type=float, default=WAIT_S_DEFAULT, metavar="S",
        help=f"listen this long at most for nodes not yet heard (default {WAIT_S_DEFAULT:g})",
    )  # fmt: skip
    group.add_argument("--operator-id", metavar="OP", help="the operator credential to use")
    state_dir_option(group)
    json_option(group, "the view (regions, nodes, channels, pending, alerts, missing)")
    group.set_defaults(handler="services.cli.liquidity:show")
    sub = group.add_subparsers(dest="liquidity_command", metavar="COMMAND")
    plan = sub.add_parser("plan", help=PLAN_HELP, description=PLAN_HELP)
    plan.add_argument(
        "--auto", action="store_true",
        help="request the proposed moves as rebalances (default: record them as proposals "
        "only, dry_run)",
    )  # fmt: skip
    plan.add_argument(
        "--caller-id", default=PLANNER_CALLER,
        help=f"the service caller the moves are requested as (default {PLANNER_CALLER}; "
        "it owns the rebalances and proposals in the log)",
    )  # fmt: skip
    plan.add_argument(
        "--every", type=float, metavar="S",
        help="keep planning: a round every S seconds until Ctrl-C, with /metrics, /healthz "
        "and /readyz (default: one round)",
    )  # fmt: skip
    plan.add_argument(
        "--caller-creds", type=Path, metavar="FILE",
        help="the caller credential moves are requested with (default: the one `corridor up` "
        "made for --caller-id, else the stack's default caller); listening needs --creds of "
        "an operator",
    )  # fmt: skip
    plan.add_argument(
        "--wait-s", type=float, default=WAIT_S_DEFAULT, metavar="S",
        help="listen this long at most for nodes not yet heard",
    )  # fmt: skip
    state_dir_option(plan)
    json_option(plan, "the proposals and the moves not made, with reasons")
    plan.set_defaults(handler="services.cli.liquidity:plan")


async def show(args: argparse.Namespace) -> int:
    from services.cli import exit_codes, output
    from services.cli.engine import EngineClient
    from services.settings import Settings

    settings = Settings()
    async with EngineClient.open(args.state_dir) as engine:
        view, _ = await current_view(args, engine, settings)
    if args.json:
        output.print_json(view)
        return exit_codes.OK
    _print(view, output)
    return exit_codes.OK


async def current_view(
    args: argparse.Namespace, engine: Any, settings: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The liquidity view now, and the corridor table it was judged against."""
    from projections.liquidity import LiquidityBook
    from services.cli.errors import UsageError
    from services.liquidity.config import targets_from
    from services.liquidity.feed import gather, now_ms

    if not 0 < args.wait_s <= WAIT_S_MAX:
        raise UsageError(f"--wait-s must be in (0, {WAIT_S_MAX:g}]")
    targets = targets_from(settings)
    book = LiquidityBook(interval_ms=int(settings.health_interval_s * 1000))
    corridors = await engine.corridors_view()
    expected = {
        (c["region"], c["node"])
        for row in corridors.get("corridors", [])
        for c in row.get("candidates", [])
    }
    await gather(engine.nc, book, expected=expected, wait_s=args.wait_s)
    at_ms = now_ms()
    view = book.view(at_ms, targets, await _outflows(args, settings, at_ms))
    view["missing"] = [f"{r}/{n}" for r, n in sorted(expected - book.nodes())]
    view["at_ms"] = at_ms
    return view, corridors


async def plan(args: argparse.Namespace) -> int:
    from services.cli import exit_codes
    from services.cli.errors import UsageError
    from services.settings import Settings

    settings = Settings()
    if args.every is None:
        await _plan_round(args, settings)
        return exit_codes.OK
    if not ROUND_S_MIN <= args.every <= ROUND_S_MAX:
        raise UsageError(f"--every must be in [{ROUND_S_MIN:g}, {ROUND_S_MAX:g}] seconds")
    # /metrics, /healthz, and a /readyz that fails once rounds stop finishing (ADR 0153).
    from services.metrics.freshness import finished_within
    from services.metrics.server import MetricsServer

    last: list[float] = []
    metrics = MetricsServer.start(
        host=settings.metrics_host, port=settings.metrics_port,
        ready=finished_within(lambda: last[-1] if last else None,
                              max_age_s=2 * args.every + ROUND_GRACE_S, what="planning round"),
    )  # fmt: skip
    print(f"planning every {args.every:g} s (probes on {metrics.url})", file=sys.stderr, flush=True)
    try:
        while True:
            started = time.monotonic()
            try:
                await _plan_round(args, settings)
                last[:] = [time.monotonic()]
            except Exception as exc:  # one failed round (a stack briefly away) ends nothing
                print(f"round failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(max(0.0, args.every - (time.monotonic() - started)))
    finally:
        metrics.stop()


async def _plan_round(args: argparse.Namespace, settings: Any) -> None:
    from services.bus import subjects
    from services.cli import output
    from services.cli.credentials import CredentialRequest, requested, resolve
    from services.cli.engine import EngineClient
    from services.domain.liquidity.circles import plan_circles
    from services.domain.liquidity.planner import plan as make_plan
    from services.liquidity.config import plan_rules, targets_from
    from services.liquidity.rebalance import (
        budget_left_after,
        circle_body,
        circle_inputs,
        circle_key,
        idempotency_key,
        keysend_nodes,
        planner_inputs,
        request_body,
    )

    recorded: list[dict[str, Any]] = []
    # Requesting is the planner caller's right, listening an operator's: the moves (and, in a
    # dry run, the proposals, ADR 0246) go out on a second connection, as this caller.
    wanted = CredentialRequest(role="caller", explicit=args.caller_creds,
                               wanted_id=args.caller_id)  # fmt: skip
    with requested(wanted):
        credential = resolve(args.state_dir)
    caller = credential.token(("caller",), args.caller_id) or args.caller_id
    kind = credential.identity.kind if credential.identity is not None else None
    async with EngineClient.open(args.state_dir) as engine:
        view, corridors = await current_view(args, engine, settings)
        regions, nodes = planner_inputs(view, corridors)
        spent = await _spent_today(engine, [r.region for r in regions], view["at_ms"])
        result = make_plan(
            regions, nodes, targets_from(settings), plan_rules(settings), spent_today_msat=spent
        )
        # Circles within one node (ADR 0281), from what the day and the moves leave.
        left = budget_left_after(settings.liquidity_fee_budget_msat_per_day, spent,
                                 result.proposals, [r.region for r in regions])  # fmt: skip
        circles, circle_skips = plan_circles(circle_inputs(view, corridors),
                                             targets_from(settings), plan_rules(settings),
                                             budget_left_msat=left)  # fmt: skip
    dry_run = not args.auto
    if result.proposals:
        with requested(wanted):
            async with EngineClient.open(args.state_dir) as requester:
                round_ms = settings.liquidity_planner_round_s * 1000
                for proposal in result.proposals:
                    key = idempotency_key(
                        proposal, now_ms=view["at_ms"], round_ms=round_ms, dry_run=dry_run
                    )
                    body = request_body(proposal, caller_id=caller,
                                        caller_kind=kind or "service", key=key,
                                        dry_run=dry_run)  # fmt: skip
                    source = (proposal.source_region, proposal.source_node)
                    if not dry_run and source not in keysend_nodes(corridors):
                        invoiced = await _with_target_invoice(
                            requester, proposal, body, caller=caller, kind=kind or "service"
                        )
                        if "type" not in invoiced:  # no invoice: the receive's reply says why
                            recorded.append({"idempotency_key": key, **invoiced})
                            continue
                        body = invoiced
                    subject = f"{subjects.API_PREFIX}.rebalance.{caller}"
                    reply = await requester.request(subject, body)
                    recorded.append({"idempotency_key": key, **reply})
    if circles:
        with requested(wanted):
            async with EngineClient.open(args.state_dir) as requester:
                round_ms = settings.liquidity_planner_round_s * 1000
                for circle in circles:
                    key = circle_key(circle, now_ms=view["at_ms"], round_ms=round_ms,
                                     dry_run=dry_run)  # fmt: skip
                    body = circle_body(circle, caller_id=caller, caller_kind=kind or "service",
                                       key=key, dry_run=dry_run)  # fmt: skip
                    reply = await requester.request(
                        f"{subjects.API_PREFIX}.rebalance.{caller}", body
                    )
                    recorded.append({"idempotency_key": key, **reply})
    report = {
        "mode": "auto" if args.auto else "dry_run",
        "caller_id": caller,
        "at_ms": view["at_ms"],
        "spent_today_msat": spent,
        "proposals": [{**_builtins(p), "explanation": p.explain()} for p in result.proposals],
        "circles": [{**_builtins(c), "explanation": c.explain()} for c in circles],
        "skipped": [
            {"region": s.region, "reason": s.reason} for s in (*result.skipped, *circle_skips)
        ],
        # The rebalances requested (auto) or the proposals recorded (dry run), by key.
        "recorded": recorded,
    }
    if args.json:
        output.print_json(report)
        return
    for p in result.proposals:
        print(("request: " if args.auto else "propose: ") + p.explain())
    for c in circles:
        print(("request: " if args.auto else "propose: ") + c.explain())
    for s in (*result.skipped, *circle_skips):
        print(f"skip {s.region}: {s.reason}")
    for r in recorded:
        print(f"{r['idempotency_key']}: {r.get('intent_id', '-')} {r.get('state', r.get('error'))}")
    if not result.proposals and not result.skipped and not circles and not circle_skips:
        print("no region needs outbound")


# How long a round waits for the target's invoice of a move from a CLN source (ADR 0248).
INVOICE_WAIT_S: Final = 15.0


async def _with_target_invoice(
    requester: Any, proposal: Any, body: dict[str, Any], *, caller: str, kind: str
) -> dict[str, Any]:
    """The move's request paying an invoice of the target region, issued by a receive intent
    of the planner's caller (a source that cannot keysend, ADR 0248); else the receive's
    reply or last view, which says why not."""
    from services.bolt11.codec import decode_invoice
    from services.bus import subjects
    from services.cli.receives import _issued
    from services.liquidity.rebalance import paying_invoice, receive_body

    made = await requester.request(
        f"{subjects.API_PREFIX}.receive.{caller}",
        receive_body(proposal, caller_id=caller, caller_kind=kind, key=body["idempotency_key"]),
    )
    if not made.get("ok"):
        return dict(made)
    view = await _issued(requester, made["intent_id"], wait_s=INVOICE_WAIT_S)
    issued = [e["data"] for e in (view or {}).get("events") or [] if e["type"] == "InvoiceIssued"]
    if not issued:
        return dict(view or made)
    invoice = issued[0]
    payee = decode_invoice(invoice["payment_request"]).destination
    return paying_invoice(
        body, payment_request=invoice["payment_request"], payee=payee, node=invoice["node"]
    )


def _builtins(proposal: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(proposal)


async def _spent_today(engine: Any, regions: list[str], at_ms: int) -> dict[str, int]:
    """Per source region, what today's budget stream has spent or holds (ADR 0245), read
    from the engine as the operator this command listens as; an empty day reads as none."""
    from services.bus import subjects
    from services.liquidity.rebalance import budget_streams, budget_used_msat

    spent: dict[str, int] = {}
    subject = engine.credential.reader_subject(subjects.API_GET)
    for region, stream_id in budget_streams(regions, now_ms=at_ms).items():
        body = {"type": "GetPaymentIntent", "version": 1, "intent_id": stream_id}
        reply = await engine.request(subject, body)
        if reply.get("ok"):
            spent[region] = budget_used_msat(reply.get("events") or [])
    return spent


async def _outflows(args: argparse.Namespace, settings: Any, at_ms: int) -> dict[str, Any]:
    """Outflow per region from the intent projection; none (no forecast) if it is not there."""
    from services.cli.projection_reads import projection_store
    from services.domain.liquidity.forecast import outflows

    window_ms = settings.liquidity_outflow_window_s * 1000
    try:
        async with projection_store(args.state_dir) as store:
            docs = await store.intent_docs(
                received_from_ms=at_ms - 2 * window_ms, received_to_ms=at_ms + 1
            )
    except Exception as exc:  # the view stands without a forecast; say why
        print(f"note: no forecast ({type(exc).__name__})", file=sys.stderr)
        return {}
    return outflows(docs, now_ms=at_ms, window_ms=window_ms)


def _print(view: dict[str, Any], output: Any) -> None:
    output.print_table(
        ["REGION", "NODES", "CHANNELS", "OUTBOUND_MSAT", "INBOUND_MSAT", "RATIO_PPM",
         "HTLC_MSAT", "DRY_IN_H", "AGE_S", "STALE", "ALERTS"],
        [[r["region"], r["nodes"], r["channels"], r["outbound_msat"], r["inbound_msat"],
          _dash(r["local_ratio_ppm"]), r["pending_htlcs_msat"], _dash(r["hours_until_dry"]),
          r["data_age_ms"] // 1000, "STALE" if r["stale"] else "", r["alerts"]]
         for r in view["regions"]],
    )  # fmt: skip
    print()
    output.print_table(
        ["REGION", "NODE", "CHANNEL", "PEER", "CAPACITY_MSAT", "LOCAL_MSAT", "REMOTE_MSAT",
         "HTLC_MSAT", "FEE", "ACTIVE", "AGE_S", "STALE"],
        [[c["region"], c["node"], c["channel_id"], c["peer_pubkey"][:16], c["capacity_msat"],
          c["local_balance_msat"], c["remote_balance_msat"], c["pending_htlcs_msat"],
          _fee(c), "yes" if c["active"] else "no", c["data_age_ms"] // 1000,
          "STALE" if c["stale"] else ""]
         for c in view["channels"]],
    )  # fmt: skip
    for p in view["pending"]:
        print(f"pending {p['state']}: {p['region']}/{p['node']} {p['channel_point']} "
              f"{p['capacity_msat']} msat, {p['confirmations']} conf")  # fmt: skip
    for a in view["alerts"]:
        print(f"ALERT {a['detail']}")
    for node in view["missing"]:
        print(f"not heard: {node} (is its executor running?)")


def _dash(value: object) -> object:
    return "-" if value is None else value


def _fee(channel: dict[str, Any]) -> str:
    if channel["fee_base_msat"] is None and channel["fee_ppm"] is None:
        return "-"
    return f"{_dash(channel['fee_base_msat'])}+{_dash(channel['fee_ppm'])}ppm"
