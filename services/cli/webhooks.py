"""``corridor webhooks add|list|remove|history``: a caller's webhook endpoints (ADR 0175).

Every command acts as the credential's caller (``--creds``, CORRIDOR_CREDS, or the caller
`corridor up` made); the logic is ``services/webhooks/operations.py``'s, which an HTTP API
calls the same way.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

GROUP_HELP: Final = "webhooks for your settlement events: add, list, remove, history"
_CALLER_ROLES: Final = ("caller", "agent")


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("webhooks", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="register a URL; prints its signing secret once")
    add.add_argument("--url", required=True, help="http:// or https:// URL to POST to")
    add.add_argument(
        "--events", required=True, metavar="TYPES",
        help="comma-separated: IntentSettled,IntentFailed,IntentCancelled,IntentExpired,"
        "IntentRejected,InvoicePaid,InvoiceExpired,ReceiveFailed (or all)",
    )  # fmt: skip
    add.add_argument("--idempotency-key", help="the same key registers the same endpoint")
    listing = sub.add_parser("list", help="your endpoints (never their secrets)")
    remove = sub.add_parser("remove", help="stop one of your endpoints")
    remove.add_argument("endpoint_id", metavar="ENDPOINT_ID", help="as `webhooks list` shows")
    history = sub.add_parser("history", help="your settlement events from a position, as sent")
    history.add_argument(
        "--from-position", type=int, default=1, metavar="N", help="the first log position"
    )
    history.add_argument("--limit", type=int, default=100, metavar="N", help="entries at most")
    for parser, verb in ((add, "add"), (listing, "list"), (remove, "remove"), (history, "history")):
        parser.add_argument("--caller-id", help="who acts (default: the credential's caller)")
        state_dir_option(parser)
        json_option(parser)
        parser.set_defaults(handler=f"services.cli.webhooks:{verb}_command")


def _caller(engine: Any, args: argparse.Namespace) -> str:
    from services.cli.errors import UsageError

    caller = engine.credential.token(_CALLER_ROLES, args.caller_id)
    if not caller:
        raise UsageError("say who acts: --caller-id ID (no credential names one)")
    return str(caller)


async def add_command(args: argparse.Namespace) -> int:
    from services.cli.engine import EngineClient
    from services.cli.intents import show_reply
    from services.webhooks import operations

    async with EngineClient.open(args.state_dir) as engine:
        reply = await operations.register(
            engine.request, caller_id=_caller(engine, args), url=args.url,
            event_types=operations.parse_event_types(args.events),
            idempotency_key=args.idempotency_key,
        )  # fmt: skip
    if reply.get("ok") and not args.json:
        print(f"endpoint {reply['endpoint_id']}")
        print(f"secret {reply['secret']}")
        print("(the secret is shown once: keep it where your receiver verifies signatures)",
              file=sys.stderr)  # fmt: skip
        return 0
    return show_reply(reply, as_json=args.json)


async def list_command(args: argparse.Namespace) -> int:
    from services.cli import output
    from services.cli.engine import EngineClient
    from services.cli.intents import show_reply
    from services.webhooks import operations

    async with EngineClient.open(args.state_dir) as engine:
        reply = await operations.list_endpoints(engine.request, caller_id=_caller(engine, args))
    if args.json or not reply.get("ok"):
        return show_reply(reply, as_json=args.json)
    output.print_table(
        ["ENDPOINT", "ACTIVE", "EVENTS", "FAILED", "URL"],
        [[e["endpoint_id"], "yes" if e["active"] else f"no ({e['disabled_reason']})",
          ",".join(e["event_types"]), str(e["failed_deliveries"]), e["url"]]
         for e in reply["endpoints"]],
    )  # fmt: skip
    return 0


async def remove_command(args: argparse.Namespace) -> int:
    from services.cli.engine import EngineClient
    from services.cli.intents import show_reply
    from services.webhooks import operations

    async with EngineClient.open(args.state_dir) as engine:
        reply = await operations.remove(
            engine.request, caller_id=_caller(engine, args), endpoint_id=args.endpoint_id
        )
    return show_reply(reply, as_json=args.json)


async def history_command(args: argparse.Namespace) -> int:
    from services.cli import output
    from services.cli.engine import EngineClient
    from services.cli.errors import UsageError
    from services.webhooks.history import HISTORY_ENTRIES_MAX, webhook_history

    if not 1 <= args.limit <= HISTORY_ENTRIES_MAX:
        raise UsageError(f"--limit must be 1..{HISTORY_ENTRIES_MAX}")
    async with EngineClient.open(args.state_dir) as engine:
        caller = _caller(engine, args)
        identity = engine.credential.identity
        role = identity.role if identity is not None else "caller"
        page = await webhook_history(
            engine.nc, role=role, ident=identity.id if identity is not None else caller,
            owner=caller, from_position=args.from_position, limit=args.limit,
        )  # fmt: skip
    if args.json:
        output.print_json(page)
        return 0
    for entry in page["entries"]:
        output.print_json(entry)
    if page["next_position"] is not None:
        print(f"more from position {page['next_position']}", file=sys.stderr)
    return 0
