"""``corridor channels open|close``: channel operations on our nodes as intents (ADR 0234).

Sends ``OpenChannel`` or ``CloseChannel`` as the credential's operator and prints the
operation's id and state; ``corridor get <id>`` shows its events (requested, the funding or
closing transaction, opened or closed). Without ``--idempotency-key`` a key is generated and
printed: run again with it to get the same operation back, never a second channel.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any, Final

from schemas.channel_messages import CLOSING_TX_VSIZE, FUNDING_TX_VSIZE
from services.bus import subjects
from services.cli import exit_codes, output
from services.cli.engine import EngineClient, describe_error
from services.cli.errors import UsageError

GROUP_HELP: Final = "channel opens and closes on our nodes, as operator intents (prints JSON)"
_OPERATOR: Final = ("operator",)
MSAT_PER_SAT: Final = 1000


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("channels", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="channels_command", required=True, metavar="COMMAND")
    opener = sub.add_parser("open", help="open a channel from one of our nodes to a peer")
    opener.add_argument("--peer", required=True, metavar="PUBKEY", help="the peer's node key")
    opener.add_argument("--amount-msat", type=int, required=True, metavar="MSAT",
                        help="our side of the channel, msat (whole satoshis)")  # fmt: skip
    opener.add_argument("--push-msat", type=int, default=0, metavar="MSAT",
                        help="given to the peer at open, msat (default 0)")  # fmt: skip
    closer = sub.add_parser("close", help="close one of our node's channels cooperatively")
    closer.add_argument("--channel-point", required=True, metavar="TXID:INDEX",
                        help="the channel's funding outpoint")  # fmt: skip
    for parser, verb in ((opener, "open"), (closer, "close")):
        parser.add_argument("--node", required=True, metavar="N", help="our node, e.g. us-lnd")
        parser.add_argument(
            "--region", metavar="R", help="the node's region (default: its name up to '-')"
        )
        parser.add_argument("--sat-per-vbyte", type=int, required=True, metavar="S",
                            help="the on-chain fee rate, sat/vB")  # fmt: skip
        parser.add_argument(
            "--max-onchain-fee-msat", type=int, metavar="MSAT",
            help="the most the transaction's fee may cost (default: its fee at the rate)",
        )  # fmt: skip
        parser.add_argument(
            "--idempotency-key", metavar="KEY",
            help="the same key again returns the same operation (default: a new one, printed)",
        )  # fmt: skip
        parser.add_argument("--operator-id", help="who asks (default: the credential's operator)")
        state_dir_option(parser)
        json_option(parser)
        parser.set_defaults(handler=f"services.cli.channels:{verb}_command")


async def open_command(args: argparse.Namespace) -> int:
    if args.amount_msat <= 0:
        raise UsageError("--amount-msat must be positive")
    body: dict[str, Any] = {
        "type": "OpenChannel", "peer_pubkey": args.peer, "local_amount_msat": args.amount_msat,
        "push_msat": args.push_msat,
    }  # fmt: skip
    return await _send(args, "channel_open", body, FUNDING_TX_VSIZE)


async def close_command(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"type": "CloseChannel", "channel_point": args.channel_point}
    return await _send(args, "channel_close", body, CLOSING_TX_VSIZE)


async def _send(args: argparse.Namespace, verb: str, body: dict[str, Any], vsize: int) -> int:
    if args.sat_per_vbyte <= 0:
        raise UsageError("--sat-per-vbyte must be positive")
    key = args.idempotency_key or f"chan-{uuid.uuid4().hex}"
    if not args.idempotency_key:
        print(f"corridor: idempotency key {key} (use it to ask again)", file=sys.stderr)
    fee_msat = args.max_onchain_fee_msat
    if fee_msat is None:
        fee_msat = args.sat_per_vbyte * vsize * MSAT_PER_SAT
    body |= {
        "version": 1, "idempotency_key": key, "node": args.node,
        "region": args.region or args.node.split("-", 1)[0],
        "sat_per_vbyte": args.sat_per_vbyte, "max_onchain_fee_msat": fee_msat,
    }  # fmt: skip
    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR, args.operator_id)
        if not operator:
            raise UsageError("say who asks: --operator-id ID (no credential names an operator)")
        reply = await engine.request(f"{subjects.API_PREFIX}.{verb}.{operator}", body)
    if not reply.get("ok"):
        if args.json:
            output.print_json(reply)
        print(f"corridor: refused: {describe_error(reply)}", file=sys.stderr)
        return exit_codes.REFUSED
    shown = {
        "intent_id": reply["intent_id"], "idempotency_key": key, "state": reply.get("state"),
        "duplicate": reply.get("duplicate", False), "reason": reply.get("reason"),
    }  # fmt: skip
    if args.json:
        output.print_json(shown)
    else:
        for name, value in shown.items():
            print(f"{name}: {'-' if value is None else value}")
    return exit_codes.REFUSED if shown["state"] == "rejected" else exit_codes.OK
