"""``corridor payees onboard|get|list|erase``: contractors and employees we pay, each with a
wallet they own (issue 19; ADR 0270 personal data, ADR 0271 the onboarding package).

``onboard`` records the payee in the engine as the credential's operator (no personal data:
the payee id, region, wallet and liquidity choice), then writes the name and contact details
to the erasable ``payee_personal_data`` table with the stack's database URL: they never cross
NATS or reach the log. On the simulated network it first adds the payee's wallet node, which
keeps its own keys. With ``--liquidity channel`` it asks for a channel from the region's node
to the wallet (an ``OpenChannel`` operator intent, ADR 0234); with ``jit`` the first payment
opens one just in time. ``erase`` records ``PayeeErased`` and deletes the personal data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from services.bus import subjects
from services.cli import exit_codes, output
from services.cli.engine import EngineClient, describe_error
from services.cli.errors import Refused, UsageError

GROUP_HELP: Final = "payees: onboard contractors and employees to wallets they own, erase them"
_OPERATOR: Final = ("operator",)
MSAT_PER_SAT: Final = 1000
# The inbound channel a new payee gets by default: 1M sat, a few months of a contractor's pay
# in one direction; an operator sizes it with --channel-msat.
CHANNEL_MSAT_DEFAULT: Final = 1_000_000_000
SAT_PER_VBYTE_DEFAULT: Final = 2
# How long --wait follows the channel to its confirmations (the stack mines a block a second).
WAIT_S_DEFAULT: Final = 120.0
WAIT_POLL_S: Final = 0.25
# What the payee is told about their seed; we never see it (ADR 0271).
SEED_GUIDANCE: Final = (
    "Your wallet's seed (its recovery words) is created on your device and never leaves it; "
    "Corridor never sees or stores it.",
    "Write the words on paper, in order, and keep two copies in separate safe places; do not "
    "photograph them or store them in e-mail, chat or cloud notes.",
    "Also back up the channel state your wallet offers (an LND static channel backup, a CLN "
    "emergency.recover file) after every new channel: the seed alone restores on-chain funds, "
    "not open channels.",
    "Anyone with the words can spend your funds; nobody from Corridor will ever ask for them.",
)


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("payees", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="payees_command", required=True, metavar="COMMAND")
    onboard = sub.add_parser("onboard", help="register a payee and give them their package")
    onboard.add_argument("--name", required=True, help="the payee's name (erasable, never logged)")
    onboard.add_argument("--email", help="a contact address (erasable, never logged)")
    onboard.add_argument("--region", required=True, metavar="R", help="the region paying them")
    onboard.add_argument(
        "--jurisdiction", metavar="CC", help="their country, ISO 3166 alpha-2 (policy judges it)"
    )
    onboard.add_argument(
        "--liquidity",
        choices=("channel", "jit"),
        default="channel",
        help="inbound liquidity: a channel from our region's node now "
        "(default), or a just-in-time channel on the first payment",
    )
    onboard.add_argument(
        "--wallet-api",
        choices=("lnd", "cln"),
        default="lnd",
        help="the simulated wallet node's API (default lnd)",
    )
    onboard.add_argument(
        "--wallet-pubkey",
        metavar="PUBKEY",
        help="a wallet outside the simulator: its node key (no sim node)",
    )
    onboard.add_argument(
        "--channel-msat",
        type=int,
        default=CHANNEL_MSAT_DEFAULT,
        metavar="MSAT",
        help="the inbound channel's size, msat (whole satoshis)",
    )
    onboard.add_argument(
        "--sat-per-vbyte",
        type=int,
        default=SAT_PER_VBYTE_DEFAULT,
        metavar="S",
        help="the channel's funding fee rate, sat/vB",
    )
    onboard.add_argument(
        "--wait",
        action="store_true",
        help="wait until the channel is open (default: report its intent id)",
    )
    onboard.add_argument(
        "--wait-s", type=float, default=WAIT_S_DEFAULT, metavar="S", help="how long --wait waits"
    )
    onboard.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="the same key again returns the same payee (default: a new one, printed)",
    )
    get = sub.add_parser("get", help="a payee: the log's record and their personal data")
    get.add_argument("payee_id", metavar="PAYEE_ID", help="the payee's id (payee-...)")
    listing = sub.add_parser("list", help="payees, by id")
    erase = sub.add_parser("erase", help="erase a payee's personal data; they are paid no more")
    erase.add_argument("payee_id", metavar="PAYEE_ID", nargs="?", help="the payee's id")
    erase.add_argument(
        "--reapply",
        action="store_true",
        help="after a backup restore: delete the personal data of every payee "
        "the log says was erased",
    )
    for parser, verb in ((onboard, "onboard"), (get, "get"), (listing, "list"), (erase, "erase")):
        parser.add_argument("--operator-id", help="who asks (default: the credential's operator)")
        state_dir_option(parser)
        json_option(parser)
        parser.set_defaults(handler=f"services.cli.payees:{verb}_command")


@contextlib.asynccontextmanager
async def _stores(state_dir: Path | None) -> AsyncIterator[tuple[Any, Any]]:
    """The log (read) and the personal-data table, on the stack's database role."""
    from services.endpoints import find_stack
    from services.eventstore.postgres import PostgresEventStore
    from services.payees.directory import PayeeDirectory

    stack = find_stack(state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    try:
        yield store, PayeeDirectory(store.pool)
    finally:
        await store.close()


def _print(shown: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(shown)
        return
    for name, value in shown.items():
        print(f"{name}: {'-' if value is None else value}")


async def onboard_command(args: argparse.Namespace) -> int:
    from schemas import errors
    from services.engine.ids import payee_id_for
    from services.payees import wallets
    from services.payees.directory import validated

    if args.channel_msat <= 0 or args.channel_msat % MSAT_PER_SAT:
        raise UsageError("--channel-msat must be a positive number of whole satoshis")
    key = args.idempotency_key or f"payee-{uuid.uuid4().hex}"
    if not args.idempotency_key:
        print(f"corridor: idempotency key {key} (use it to ask again)", file=sys.stderr)
    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR, args.operator_id)
        if not operator:
            raise UsageError("say who asks: --operator-id ID (no credential names an operator)")
        payee_id = payee_id_for(operator, key)
        try:  # the personal data is checked before anything is created, and never printed
            personal = validated(payee_id, args.name, args.email)
        except errors.CorridorError as exc:
            raise UsageError(f"--{exc.field}: {exc.message}") from None
        network = wallets.SimNetworkAccess.of(args.state_dir)
        # Where the inbound channel comes from, known before anything is created.
        region_node = await network.region_node(args.region) if network else None
        if args.liquidity == "channel" and region_node is None:
            raise Refused(f"no node of ours in region {args.region} to open a channel from")
        if args.wallet_pubkey:
            wallet = wallets.outside_wallet(args.wallet_pubkey)
        else:
            jit_lsp = region_node.name if args.liquidity == "jit" and region_node else None
            wallet = await network.wallet_for(payee_id, implementation=args.wallet_api, lsp=jit_lsp)
        body = {
            "type": "OnboardPayee", "version": 1, "idempotency_key": key, "region": args.region,
            "wallet_pubkey": wallet.pubkey, "wallet_node": wallet.node,
            "liquidity": args.liquidity, "jurisdiction": args.jurisdiction,
        }  # fmt: skip
        reply = await engine.request(f"{subjects.API_PREFIX}.payee_onboard.{operator}", body)
        if not reply.get("ok"):
            if args.json:
                output.print_json(reply)
            print(f"corridor: refused: {describe_error(reply)}", file=sys.stderr)
            return exit_codes.REFUSED
        if reply["intent_id"] != payee_id:  # the name the wallet node and the row were given
            raise Refused(f"the engine named the payee {reply['intent_id']}, not {payee_id}")
        async with _stores(args.state_dir) as (_, directory):
            await directory.put(personal)
        liquidity: dict[str, Any] = {"kind": args.liquidity}
        if args.liquidity == "channel":
            assert region_node is not None
            liquidity |= await _channel(engine, args, operator, key, region_node, wallet.pubkey)
        else:
            liquidity["note"] = "a just-in-time channel opens on the first payment (LSPS2)"
    shown: dict[str, Any] = {
        "payee_id": payee_id, "state": reply.get("state"),
        "duplicate": reply.get("duplicate", False), "idempotency_key": key,
        "node": wallet.node, "region": args.region,
        "package": {
            "seed_backup": list(SEED_GUIDANCE),
            "wallet": {"node": wallet.node, "pubkey": wallet.pubkey,
                       "implementation": wallet.implementation},
            "connect_to": None if region_node is None else region_node.connection(),
            "liquidity": liquidity,
        },
    }  # fmt: skip
    _print(shown, args.json)
    failed = liquidity.get("state") == "rejected"
    return exit_codes.REFUSED if failed else exit_codes.OK


async def _channel(
    engine: EngineClient, args: argparse.Namespace, operator: str, key: str,
    region_node: Any, wallet_pubkey: str,
) -> dict[str, Any]:  # fmt: skip
    """The inbound channel as an ``OpenChannel`` operator intent (ADR 0234), its key derived
    from the payee's, so onboarding again never opens a second one."""
    from schemas.channel_messages import FUNDING_TX_VSIZE

    body = {
        "type": "OpenChannel", "version": 1, "idempotency_key": f"{key}/inbound",
        "region": args.region, "node": region_node.name, "peer_pubkey": wallet_pubkey,
        "local_amount_msat": args.channel_msat, "push_msat": 0,
        "sat_per_vbyte": args.sat_per_vbyte,
        "max_onchain_fee_msat": args.sat_per_vbyte * FUNDING_TX_VSIZE * MSAT_PER_SAT,
    }  # fmt: skip
    reply = await engine.request(f"{subjects.API_PREFIX}.channel_open.{operator}", body)
    if not reply.get("ok"):
        return {"state": "refused", "error": describe_error(reply)}
    op_id = reply["intent_id"]
    shown = {"from_node": region_node.name, "amount_msat": args.channel_msat,
             "channel_intent_id": op_id, "state": reply.get("state")}  # fmt: skip
    if args.wait:
        shown["state"] = await _wait_for_channel(engine, op_id, args.wait_s)
    return shown


async def _wait_for_channel(engine: EngineClient, op_id: str, wait_s: float) -> str:
    deadline = time.monotonic() + wait_s
    body = {"type": "GetPaymentIntent", "version": 1, "intent_id": op_id}
    subject = engine.credential.reader_subject(subjects.API_GET)
    while True:
        reply = await engine.request(subject, body)
        state = str(reply.get("state"))
        if state in ("completed", "rejected") or time.monotonic() >= deadline:
            return state
        await asyncio.sleep(WAIT_POLL_S)  # a poll of the engine with a deadline


def _described(payee: Any, personal: Any) -> dict[str, Any]:
    return {
        "payee_id": payee.payee_id, "state": str(payee.status), "region": payee.region,
        "node": payee.wallet_node, "wallet_pubkey": payee.wallet_pubkey,
        "liquidity": payee.liquidity, "jurisdiction": payee.jurisdiction,
        "first_payment_intent_id": payee.first_payment_intent_id,
        "name": personal.name if personal else None,
        "email": personal.email if personal else None,
    }  # fmt: skip


async def get_command(args: argparse.Namespace) -> int:
    from services.payees import roster

    async with _stores(args.state_dir) as (store, directory):
        payee = await roster.payee(store, args.payee_id)
        if payee is None:
            print(f"corridor: no payee {args.payee_id}", file=sys.stderr)
            return exit_codes.REFUSED
        personal = await directory.get(payee.payee_id)
    _print(_described(payee, personal), args.json)
    return exit_codes.OK


async def list_command(args: argparse.Namespace) -> int:
    from services.payees import roster

    async with _stores(args.state_dir) as (store, directory):
        payees = await roster.payees(store)
        names = await directory.names([p.payee_id for p in payees])
    rows = [_described(p, names.get(p.payee_id)) for p in payees]
    if args.json:
        output.print_json(rows)
    else:
        for row in rows:
            print(f"{row['payee_id']}  {row['state']:<7} {row['region']:<6} "
                  f"{row['node'] or '-':<20} {row['name'] or '-'}")  # fmt: skip
    return exit_codes.OK


async def erase_command(args: argparse.Namespace) -> int:
    from services.payees import roster

    if args.reapply:
        async with _stores(args.state_dir) as (store, directory):
            erased = await roster.erased_ids(store)
            deleted = await directory.erase_all(erased)
        _print({"erased_in_log": len(erased), "personal_data_deleted": deleted}, args.json)
        return exit_codes.OK
    if not args.payee_id:
        raise UsageError("name the payee to erase (or --reapply)")
    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR, args.operator_id)
        if not operator:
            raise UsageError("say who asks: --operator-id ID (no credential names an operator)")
        body = {"type": "ErasePayee", "version": 1, "payee_id": args.payee_id}
        reply = await engine.request(f"{subjects.API_PREFIX}.payee_erase.{operator}", body)
    if not reply.get("ok"):
        if args.json:
            output.print_json(reply)
        print(f"corridor: refused: {describe_error(reply)}", file=sys.stderr)
        return exit_codes.REFUSED
    # The log says erased first; then the row goes. Both are idempotent: running erase again
    # finishes an erasure interrupted between the two (ADR 0270).
    async with _stores(args.state_dir) as (_, directory):
        deleted = await directory.erase(args.payee_id)
    shown = {
        "payee_id": args.payee_id, "state": reply.get("state"),
        "duplicate": reply.get("duplicate", False), "personal_data_deleted": deleted,
    }  # fmt: skip
    _print(shown, args.json)
    return exit_codes.OK
