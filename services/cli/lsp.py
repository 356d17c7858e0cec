"""``corridor lsp info|order|get``: inbound channels bought from an external LSP over LSPS1
(issue 19, ADR 0250/0251).

Thin NATS clients (ADR 0252): nothing here reads the log or talks to a node. ``order`` sends
``OrderLspChannel`` to the engine as the credential's caller or operator; the executor of the
node that gets the channel asks the LSP and follows the order, the engine pays its invoice as
an ordinary payment intent of that caller; ``order`` follows the engine's record until a
terminal state or ``--wait-s``. Run it again with the printed key to follow the same order,
never a second one. ``get`` shows an order and whether it needs a person; ``info`` asks the
region's executor for the LSP's options. ``run`` is gone: the executors follow the orders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

GROUP_HELP: Final = "inbound channels from an external LSP over LSPS1: info, order, get"
MSAT_PER_SAT: Final = 1000
# How long `order` follows an order by default: a hold invoice, a channel open, a few polls.
WAIT_S_DEFAULT: Final = 60.0
# Between two looks at the engine's record of an order `order` follows.
POLL_S: Final = 0.5
PUBKEY_HEX_CHARS: Final = 66


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("lsp", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="lsp_command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="the LSP's LSPS1 options (lsps1.get_info)")
    order = sub.add_parser("order", help="buy an inbound channel for our node of a region")
    for parser in (info, order):
        parser.add_argument("--region", required=True, metavar="R", help="our region")
        parser.add_argument("--lsp", required=True, metavar="NODE",
                            help="the LSP: a simulated node's name or its pubkey")  # fmt: skip
        parser.add_argument(
            "--node", metavar="NAME", help="our node (default: the region's first listed)"
        )
    order.add_argument("--lsp-balance-sat", type=int, required=True, metavar="SAT",
                       help="the LSP's side of the channel: our inbound, sat")  # fmt: skip
    order.add_argument("--client-balance-sat", type=int, default=0, metavar="SAT",
                       help="our side, paid to the LSP and pushed back (default 0)")  # fmt: skip
    order.add_argument("--max-fee-sat", type=int, required=True, metavar="SAT",
                       help="the LSP's fee cap; a dearer quote is never paid")  # fmt: skip
    order.add_argument("--max-routing-fee-msat", type=int, default=10_000, metavar="MSAT",
                       help="the payment's routing fee cap (default 10000)")  # fmt: skip
    order.add_argument("--channel-expiry-blocks", type=int, default=4032, metavar="N",
                       help="the lease, in blocks (default 4032)")  # fmt: skip
    order.add_argument("--corridor", metavar="C",
                       help="the corridor that pays the invoice (default us-eu)")  # fmt: skip
    order.add_argument("--caller-id", help="who orders (default: the credential's id)")
    order.add_argument("--idempotency-key", metavar="KEY",
                       help="the same key, the same order (default: new, printed)")  # fmt: skip
    order.add_argument("--wait-s", type=float, default=WAIT_S_DEFAULT, metavar="S",
                       help="follow the order this long (default 60)")  # fmt: skip
    # Gone (ADR 0252): the executors follow the orders; kept to say so to old scripts.
    run = sub.add_parser("run", help="no longer needed: the executors follow LSP orders")
    run.add_argument("--region", metavar="R", help=argparse.SUPPRESS)
    run.add_argument("--node", metavar="NAME", help=argparse.SUPPRESS)
    run.add_argument("--caller-id", help=argparse.SUPPRESS)
    run.add_argument("--corridor", metavar="C", help=argparse.SUPPRESS)
    run.add_argument("--poll-s", type=float, default=2.0, metavar="S", help=argparse.SUPPRESS)
    run.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    get = sub.add_parser("get", help="one order: its state, events and exceptions")
    get.add_argument("order_id", metavar="ID", help="the order's id (lsp-...)")
    for parser, verb in ((info, "info"), (order, "order"), (run, "run"), (get, "get")):
        state_dir_option(parser)
        json_option(parser)
        parser.set_defaults(handler=f"services.cli.lsp:{verb}_command")


def _nodes(state_dir: Path) -> list[dict[str, Any]]:
    from services.cli.errors import UsageError

    try:
        listed = json.loads((state_dir / "endpoints.json").read_text()).get("nodes", [])
    except (OSError, ValueError) as exc:
        raise UsageError(f"no nodes listed in {state_dir}: {exc}") from None
    return list(listed)


def _our_node(args: argparse.Namespace, state_dir: Path) -> str:
    """The name of our node that gets the channel: ``--node``, or the region's first."""
    from services.cli.errors import UsageError

    if args.node:
        return str(args.node)
    ours = [
        n for n in _nodes(state_dir) if n.get("role") == "ours" and n.get("region") == args.region
    ]  # fmt: skip
    if not ours:
        raise UsageError(f"no node of ours in region {args.region!r} in {state_dir}")
    return str(ours[0]["name"])


def _lsp_pubkey(args: argparse.Namespace, state_dir: Path) -> str:
    from services.cli.errors import UsageError

    if getattr(args, "lsp", None) is None:
        return ""  # `run`: each order names its LSP
    if len(args.lsp) == PUBKEY_HEX_CHARS and all(c in "0123456789abcdef" for c in args.lsp):
        return str(args.lsp)
    for node in _nodes(state_dir):
        if node.get("name") == args.lsp:
            return str(node["pubkey"])
    raise UsageError(f"no node {args.lsp!r} in {state_dir}/endpoints.json (give its pubkey)")


def _state_dir(args: argparse.Namespace) -> Path:
    from services.endpoints import DEFAULT_STATE_DIR

    return Path(args.state_dir or DEFAULT_STATE_DIR)


async def info_command(args: argparse.Namespace) -> int:
    """The LSP's options, asked by the region's executor through its own node (ADR 0252)."""
    from services.bus import subjects
    from services.cli.engine import EngineClient

    state_dir = _state_dir(args)
    node = _our_node(args, state_dir)
    body = {"lsp_pubkey": _lsp_pubkey(args, state_dir)}
    async with EngineClient.open(args.state_dir) as engine:
        reply = await engine.request(f"{subjects.LSP_INFO_PREFIX}.{node}", body)
    if not reply.get("ok"):
        return _refused(args, reply)
    info = reply["info"]
    if args.json:
        from services.cli import output

        output.print_json(info)
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return 0


async def order_command(args: argparse.Namespace) -> int:
    """``OrderLspChannel`` to the engine as the credential's caller or operator, then its
    record followed from the engine until it ends or ``--wait-s`` passes."""
    from services.bus import subjects
    from services.cli.engine import EngineClient
    from services.cli.errors import UsageError

    key = args.idempotency_key or f"lsp-{uuid.uuid4()}"
    if not args.idempotency_key:
        print(f"idempotency key {key} (use it again to follow this order)", file=sys.stderr)
    state_dir = _state_dir(args)
    body = {
        "type": "OrderLspChannel", "version": 1, "idempotency_key": key,
        "region": args.region, "node": _our_node(args, state_dir),
        "lsp_pubkey": _lsp_pubkey(args, state_dir),
        "lsp_balance_msat": args.lsp_balance_sat * MSAT_PER_SAT,
        "client_balance_msat": args.client_balance_sat * MSAT_PER_SAT,
        "max_fee_msat": args.max_fee_sat * MSAT_PER_SAT,
        "max_routing_fee_msat": args.max_routing_fee_msat,
        "channel_expiry_blocks": args.channel_expiry_blocks,
        "corridor": args.corridor or "us-eu",
    }  # fmt: skip
    async with EngineClient.open(args.state_dir) as engine:
        token = engine.credential.token(("caller", "operator"), args.caller_id)
        if not token:
            raise UsageError("say who orders: --caller-id ID (no credential names a caller)")
        reply = await engine.request(f"{subjects.LSP_API_PREFIX}.order.{token}", body)
        if not reply.get("ok"):
            return _refused(args, reply)
        order_id = str(reply["intent_id"])
        deadline = time.monotonic() + args.wait_s
        while True:
            state, events = await _read(engine, order_id)
            if state.terminal or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)  # a poll of the engine's record, with a deadline
    return _print(args, state, events)


async def run_command(args: argparse.Namespace) -> int:
    """Kept so scripts that call it learn why it is gone (ADR 0252)."""
    print(
        "corridor lsp run is no longer needed: the executor of the order's node follows every "
        "LSP order from the dispatch stream and reports to the engine (ADR 0252)",
        file=sys.stderr,
    )
    print(json.dumps({"open": []}))
    return 0


async def get_command(args: argparse.Namespace) -> int:
    from services.cli.engine import EngineClient
    from services.domain.lsp_orders import exceptions

    async with EngineClient.open(args.state_dir) as engine:
        state, events = await _read(engine, args.order_id)
    found = exceptions([state], now_s=int(time.time()))
    return _print(args, state, events, [f.kind for f in found])


async def _read(engine: Any, order_id: str) -> tuple[Any, list[str]]:
    """The engine's record of an order: its state and its events' types."""
    import msgspec

    from schemas.replies import PaymentIntentView
    from schemas.upcasting import decode
    from services.bus import subjects
    from services.cli.errors import UsageError
    from services.domain.lsp_orders import replay

    query = {"type": "GetPaymentIntent", "version": 1, "intent_id": order_id}
    reply = await engine.request(engine.credential.reader_subject(subjects.LSP_GET), query)
    if not reply.get("ok"):
        raise UsageError(f"no LSP order {order_id}: {reply.get('error', {}).get('code')}")
    view = msgspec.convert(reply, PaymentIntentView)
    state = replay(decode(e.type, e.version, e.data) for e in view.events)
    if state is None:
        raise UsageError(f"no LSP order {order_id}")
    return state, [e.type for e in view.events]


def _refused(args: argparse.Namespace, reply: dict[str, Any]) -> int:
    from services.cli import exit_codes, output
    from services.cli.engine import describe_error

    if args.json:
        output.print_json(reply)
    print(f"corridor: refused: {describe_error(reply)}", file=sys.stderr)
    return exit_codes.REFUSED


def _print(
    args: argparse.Namespace, state: Any, events: list[str], found: list[str] | None = None
) -> int:
    import msgspec

    from services.cli import output

    view = {**msgspec.to_builtins(state), "events": events, "exceptions": found or []}
    if args.json:
        output.print_json(view)
    else:
        print(f"{state.lsp_order_id}  {state.status}  {state.outcome or ''}".rstrip())
        for name in ("remote_order_id", "fee_total_msat", "payment_intent_id", "funding_outpoint"):
            if view.get(name) is not None:
                print(f"  {name}: {view[name]}")
        for kind in found or []:
            print(f"  exception: {kind}")
    return 0
