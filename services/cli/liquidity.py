"""``corridor liquidity``: every channel of our nodes per region, with targets and alerts.

It listens to the executors' channel snapshots (ADR 0240) as an operator until every node of
the corridor table has been heard (or ``--wait-s`` passes), and judges them against the
targets in settings (ADR 0241); the outflow forecast comes from the intent projection.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

GROUP_HELP: Final = "channels and liquidity of our nodes per region, with targets and alerts"
# One health interval is when every executor has published once; two tolerate one lost message.
WAIT_S_DEFAULT: Final = 10.0
WAIT_S_MAX: Final = 120.0


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("liquidity", help=GROUP_HELP, description=GROUP_HELP)
    group.add_argument(
        "--wait-s", type=float, default=WAIT_S_DEFAULT, metavar="S",
        help=f"listen this long at most for nodes not yet heard (default {WAIT_S_DEFAULT:g})",
    )  # fmt: skip
    group.add_argument("--operator-id", metavar="OP", help="the operator credential to use")
    state_dir_option(group)
    json_option(group, "the view (regions, channels, pending, alerts, missing)")
    group.set_defaults(handler="services.cli.liquidity:show")


async def show(args: argparse.Namespace) -> int:
    from projections.liquidity import LiquidityBook
    from services.cli import exit_codes, output
    from services.cli.engine import EngineClient
    from services.cli.errors import UsageError
    from services.liquidity.config import targets_from
    from services.liquidity.feed import gather, now_ms
    from services.settings import Settings

    if not 0 < args.wait_s <= WAIT_S_MAX:
        raise UsageError(f"--wait-s must be in (0, {WAIT_S_MAX:g}]")
    settings = Settings()
    targets = targets_from(settings)
    book = LiquidityBook(interval_ms=int(settings.health_interval_s * 1000))
    async with EngineClient.open(args.state_dir) as engine:
        corridors = await engine.corridors_view()
        expected = {
            (c["region"], c["node"])
            for row in corridors.get("corridors", [])
            for c in row.get("candidates", [])
        }
        await gather(engine.nc, book, expected=expected, wait_s=args.wait_s)
    at_ms = now_ms()
    outflows = await _outflows(args, settings, at_ms)
    view = book.view(at_ms, targets, outflows)
    view["missing"] = [f"{r}/{n}" for r, n in sorted(expected - book.nodes())]
    if args.json:
        output.print_json(view)
        return exit_codes.OK
    _print(view, output)
    return exit_codes.OK


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
