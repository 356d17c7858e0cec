"""``corridor lsp info|order|get``: inbound channels bought from an external LSP over LSPS1
(issue 19, ADR 0250/0251).

``info`` asks the LSP its options through our node of the region. ``order`` records an order
(``lsp-`` stream), asks the LSP for it, pays its invoice as an ordinary payment intent of the
credential's caller, and follows it until a terminal state or ``--wait-s``; run it again with
the printed key to follow the same order, never a second one. ``get`` shows an order and
whether it needs a person (reconciliation).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

GROUP_HELP: Final = "inbound channels from an external LSP over LSPS1: info, order, get"
MSAT_PER_SAT: Final = 1000
# How long `order` follows an order by default: a hold invoice, a channel open, a few polls.
WAIT_S_DEFAULT: Final = 60.0
LSP_CALL_TIMEOUT_S: Final = 10.0
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
        parser.add_argument("--node", metavar="NAME|URI",
                            help="our node (default: the region's first node in endpoints.json; "
                                 "lnd://... or cln://... for a real one)")  # fmt: skip
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
    order.add_argument("--caller-id", default="local",
                       help="the caller whose payment intent pays")  # fmt: skip
    order.add_argument("--idempotency-key", metavar="KEY",
                       help="the same key, the same order (default: new, printed)")  # fmt: skip
    order.add_argument("--wait-s", type=float, default=WAIT_S_DEFAULT, metavar="S",
                       help="follow the order this long (default 60)")  # fmt: skip
    get = sub.add_parser("get", help="one order: its state, events and exceptions")
    get.add_argument("order_id", metavar="ID", help="the order's id (lsp-...)")
    for parser, verb in ((info, "info"), (order, "order"), (get, "get")):
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
    from services.cli.errors import UsageError
    from services.executor.nodes import resolve_node

    if args.node and "://" in args.node:
        return str(resolve_node(args.node, region=args.region, state_dir=state_dir).uri)
    ours = [
        n for n in _nodes(state_dir)
        if n.get("role") == "ours" and n.get("region") == args.region
        and (args.node is None or n["name"] == args.node)
    ]  # fmt: skip
    if not ours:
        raise UsageError(f"no node of ours in region {args.region!r} ({args.node or 'any'})")
    name = ours[0]["name"]
    return str(resolve_node(f"sim://{name}", region=args.region, state_dir=state_dir).uri)


def _lsp_pubkey(args: argparse.Namespace, state_dir: Path) -> str:
    from services.cli.errors import UsageError

    if len(args.lsp) == PUBKEY_HEX_CHARS and all(c in "0123456789abcdef" for c in args.lsp):
        return str(args.lsp)
    for node in _nodes(state_dir):
        if node.get("name") == args.lsp:
            return str(node["pubkey"])
    raise UsageError(f"no node {args.lsp!r} in {state_dir}/endpoints.json (give its pubkey)")


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[tuple[Any, Any, str]]:
    from services.endpoints import DEFAULT_STATE_DIR
    from services.logging import configure_logging

    configure_logging("info", stream=sys.stderr)  # stdout is the command's answer
    from services.executor.nodes import adapter_for
    from services.lsps.client import LspsClient

    state_dir = args.state_dir or DEFAULT_STATE_DIR
    adapter = adapter_for(_our_node(args, state_dir))
    try:
        async with LspsClient(adapter) as client:
            yield adapter, client, _lsp_pubkey(args, state_dir)
    finally:
        await adapter.close()


async def info_command(args: argparse.Namespace) -> int:
    from services.cli import output
    from services.lsps.lsps1 import Lsps1Client

    async with _client(args) as (adapter, client, lsp):
        await client.ready(lsp, timeout_s=LSP_CALL_TIMEOUT_S)
        info = await Lsps1Client(client, adapter, timeout_s=LSP_CALL_TIMEOUT_S).get_info(lsp)
    if args.json:
        output.print_json(info)
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return 0


async def order_command(args: argparse.Namespace) -> int:
    from schemas import lsp_messages as lm
    from schemas.common import Caller
    from services.cli.credentials import resolve
    from services.cli.engine import connect
    from services.endpoints import find_stack
    from services.eventstore.postgres import PostgresEventStore
    from services.lsps.intents import EngineIntents
    from services.lsps.orders import LspOrders

    key = args.idempotency_key or f"lsp-{uuid.uuid4()}"
    if not args.idempotency_key:
        print(f"idempotency key {key} (use it again to follow this order)", file=sys.stderr)
    stack = find_stack(args.state_dir)
    caller = Caller(id=args.caller_id, kind="service")
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    nc = await connect(stack.nats_url, name="corridor-lsp", creds=resolve(args.state_dir).path)
    try:
        async with _client(args) as (adapter, client, lsp):
            intents = EngineIntents(nc, caller=caller, corridor=args.corridor or "us-eu")
            orders = LspOrders(
                store=store, node=adapter, lsps=client, intents=intents, caller=caller,
                timeout_s=LSP_CALL_TIMEOUT_S,
            )  # fmt: skip
            command = lm.OrderLspChannel(
                idempotency_key=key, region=args.region, node=args.node or args.region,
                lsp_pubkey=lsp, lsp_balance_msat=args.lsp_balance_sat * MSAT_PER_SAT,
                client_balance_msat=args.client_balance_sat * MSAT_PER_SAT,
                max_fee_msat=args.max_fee_sat * MSAT_PER_SAT,
                max_routing_fee_msat=args.max_routing_fee_msat,
                channel_expiry_blocks=args.channel_expiry_blocks,
            )  # fmt: skip
            state = await orders.order(command)
            state = await orders.run(state.lsp_order_id, deadline_s=time.monotonic() + args.wait_s)
    finally:
        await nc.close()
        await store.close()
    return _print(args, state, [])


async def get_command(args: argparse.Namespace) -> int:
    from services.domain.lsp_orders import exceptions, replay
    from services.endpoints import find_stack
    from services.engine.event_codec import to_domain
    from services.eventstore.postgres import PostgresEventStore

    stack = find_stack(args.state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    try:
        stored = await store.read_stream(args.order_id)
    finally:
        await store.close()
    state = replay(to_domain(e) for e in stored)
    if state is None:
        from services.cli.errors import UsageError

        raise UsageError(f"no LSP order {args.order_id}")
    found = exceptions([state], now_s=int(time.time()))
    return _print(args, state, [e.type for e in stored], [f.kind for f in found])


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
