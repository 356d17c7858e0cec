"""``corridor receive``: a receive intent (ADR 0220) — an invoice on a node of a region.

Sends ``CreateReceiveIntent`` as the credential's caller, then waits (``--wait-s``) until the
region's executor has reported the node's invoice, and prints the intent id and the payment
request. Without ``--idempotency-key`` a key is generated and printed: run again with it to get
the same intent (and the same invoice) back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any, Final

from schemas import limits
from services.bus import subjects
from services.cli import exit_codes, output
from services.cli.engine import EngineClient, describe_error
from services.cli.errors import UsageError

GROUP_HELP: Final = "receive: an invoice on a node of a region, paid to us (prints JSON)"
_CALLER_ROLES: Final = ("caller", "agent")
# How often the CLI asks whether the invoice is issued while it waits (a poll with a deadline,
# never a sleep standing in for a condition).
POLL_S: Final = 0.2
WAIT_S_DEFAULT: Final = 30.0
# Past these the invoice exists (or never will): nothing more to wait for.
_ISSUED_OR_ENDED: Final = frozenset({"issued", "paid", "expired", "failed"})


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    parser = subparsers.add_parser("receive", help=GROUP_HELP, description=GROUP_HELP)
    parser.set_defaults(handler="services.cli.receives:receive")
    parser.add_argument(
        "--amount-msat", type=int, required=True, metavar="MSAT", help="amount to receive, msat"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--region", metavar="R", help="a region of ours (default us)")
    where.add_argument("--corridor", metavar="C", help="or: the first usable node of a corridor")
    parser.add_argument("--memo", default="", help="the invoice's description")
    parser.add_argument(
        "--expiry-s", type=int, default=limits.RECEIVE_EXPIRY_S_DEFAULT, metavar="S",
        help=f"how long the invoice is payable (default {limits.RECEIVE_EXPIRY_S_DEFAULT})",
    )  # fmt: skip
    parser.add_argument(
        "--idempotency-key", metavar="KEY",
        help="the same key again returns the same receive (default: a new one, printed)",
    )  # fmt: skip
    parser.add_argument("--caller-id", help="who receives (default: the credential's caller)")
    parser.add_argument(
        "--wait-s", type=float, default=WAIT_S_DEFAULT, metavar="S",
        help=f"wait this long for the invoice (default {WAIT_S_DEFAULT:g})",
    )  # fmt: skip
    state_dir_option(parser)
    json_option(parser)


async def receive(args: argparse.Namespace) -> int:
    if args.amount_msat <= 0:
        raise UsageError("--amount-msat must be positive")
    key = args.idempotency_key or f"rcv-{uuid.uuid4().hex}"
    if not args.idempotency_key:
        print(f"corridor: idempotency key {key} (use it to ask again)", file=sys.stderr)
    async with EngineClient.open(args.state_dir) as engine:
        caller = engine.credential.token(_CALLER_ROLES, args.caller_id)
        if not caller:
            raise UsageError("say who receives: --caller-id ID (no credential names a caller)")
        identity = engine.credential.identity
        kind = (identity.kind if identity is not None else None) or "service"
        body: dict[str, Any] = {
            "type": "CreateReceiveIntent", "version": 1, "idempotency_key": key,
            "caller": {"id": args.caller_id or caller, "kind": kind},
            "amount_msat": args.amount_msat, "memo": args.memo, "expiry_s": args.expiry_s,
        }  # fmt: skip
        if args.corridor:
            body["corridor"] = args.corridor
        else:
            body["region"] = args.region or "us"
        reply = await engine.request(f"{subjects.API_PREFIX}.receive.{caller}", body)
        if not reply.get("ok"):
            return _refused(reply, as_json=args.json)
        view = await _issued(engine, reply["intent_id"], wait_s=args.wait_s)
    shown = summary(reply["intent_id"], key, view or reply)
    if args.json:
        output.print_json(shown)
    else:
        for name, value in shown.items():
            print(f"{name}: {'-' if value is None else value}")
    # No invoice: the receive failed, or its node has not answered within --wait-s (the
    # stack's engine answered, so it is not a usage mistake).
    return exit_codes.OK if shown["payment_request"] else exit_codes.REFUSED


def _refused(reply: dict[str, Any], *, as_json: bool) -> int:
    if as_json:
        output.print_json(reply)
    print(f"corridor: refused: {describe_error(reply)}", file=sys.stderr)
    return exit_codes.REFUSED


async def _issued(engine: EngineClient, intent_id: str, *, wait_s: float) -> dict[str, Any] | None:
    """The receive's view once its invoice is issued (or it ended), or the last one seen."""
    body = {"type": "GetPaymentIntent", "version": 1, "intent_id": intent_id}
    subject = engine.credential.reader_subject(subjects.API_GET)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    view: dict[str, Any] | None = None
    while True:
        view = await engine.request(subject, body)
        if view.get("ok") and view.get("state") in _ISSUED_OR_ENDED:
            return view
        if loop.time() >= deadline:
            print(f"corridor: no invoice within {wait_s:g} s; `corridor get {intent_id}` "
                  "shows it later", file=sys.stderr)  # fmt: skip
            return view if view.get("ok") else None
        await asyncio.sleep(POLL_S)


def summary(intent_id: str, key: str, view: dict[str, Any]) -> dict[str, Any]:
    """What ``corridor receive`` prints: the intent and its invoice, from the events."""
    facts: dict[str, Any] = {}
    for event in view.get("events") or []:
        facts.update(event.get("data") or {})
    return {
        "intent_id": intent_id,
        "idempotency_key": key,
        "state": view.get("state"),
        "node": facts.get("node"),
        "amount_msat": facts.get("amount_msat"),
        "payment_request": facts.get("payment_request"),
        "payment_hash": facts.get("payment_hash"),
        "expires_at_s": facts.get("expires_at_s"),
        "reason": view.get("reason"),
    }
