"""``corridor dlq list|replay|drop``: the dead-letter queue, through the engine (ADR 0080).

Each acts as the operator whose credential connects (``--operator-id`` picks one of the state
dir's); the engine checks that credential and records every replay and drop in the log with
the required ``--reason``.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

GROUP_HELP: Final = "the dead-letter queue: list, replay or drop messages (audited)"
_OPERATOR_ROLES: Final = ("operator",)


def register(subparsers: Any) -> None:
    from schemas.dead_letters import DLQ_ACTION_MAX, DLQ_LIST_MAX
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("dlq", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")

    listing = sub.add_parser(
        "list", help="dead letters, oldest first: why each was refused and where it came from"
    )
    listing.add_argument(
        "--from-sequence", type=int, default=1, metavar="SEQ", help="start at this sequence"
    )
    listing.add_argument(
        "--limit",
        type=int,
        default=20,
        metavar="N",
        help=f"at most N rows (1 to {DLQ_LIST_MAX})",
    )
    _operator(listing)
    state_dir_option(listing)
    json_option(listing, "the page")
    listing.set_defaults(handler="services.cli.dlq:list_dead_letters")

    for verb, what in (
        ("replay", "put dead letters back on the stream they came from, then delete them"),
        ("drop", "delete dead letters for good: their commands are never applied"),
    ):
        action = sub.add_parser(verb, help=what, description=what + " (recorded in the log)")
        action.add_argument(
            "sequences",
            type=int,
            nargs="+",
            metavar="SEQ",
            help=f"sequences from `corridor dlq list` (at most {DLQ_ACTION_MAX})",
        )
        action.add_argument(
            "--reason", required=True, help="why, recorded in the log with your operator id"
        )
        _operator(action)
        state_dir_option(action)
        json_option(action)
        action.set_defaults(handler=f"services.cli.dlq:{verb}")


def _operator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator-id",
        metavar="OP",
        help="who acts (default: the credential's operator; its credential in STATE_DIR/auth/ "
        "is used if there is one)",
    )


async def list_dead_letters(args: argparse.Namespace) -> int:
    from schemas.dead_letters import DLQ_LIST_MAX
    from services.cli.errors import UsageError

    if not 1 <= args.limit <= DLQ_LIST_MAX:
        raise UsageError(f"--limit is 1 to {DLQ_LIST_MAX}")
    if args.from_sequence < 1:
        raise UsageError("--from-sequence counts from 1")
    body = {
        "type": "ListDeadLetters", "version": 1,
        "from_sequence": args.from_sequence, "limit": args.limit,
    }  # fmt: skip
    reply = await _ask(args, "list", body)
    if args.json or not reply.get("ok"):
        return _show(reply, args.json)
    from services.cli import output

    rows = [
        [e["sequence"], e.get("stored_at") or "", e.get("original_subject") or e["subject"],
         e.get("error_code") or "", (e.get("error_message") or "")[:60]]
        for e in reply["entries"]
    ]  # fmt: skip
    if not rows:
        print("no dead letters")
    else:
        output.print_table(["SEQ", "STORED", "FROM", "CODE", "WHY"], rows)
    if reply.get("next_sequence"):
        print(f"more: --from-sequence {reply['next_sequence']}")
    return 0


async def replay(args: argparse.Namespace) -> int:
    return await _act(args, "replay", "ReplayDeadLetters")


async def drop(args: argparse.Namespace) -> int:
    return await _act(args, "drop", "DropDeadLetters")


async def _act(args: argparse.Namespace, verb: str, kind: str) -> int:
    from services.cli import exit_codes
    from services.cli.errors import UsageError

    if not args.reason.strip():
        raise UsageError("--reason must say why (it is recorded in the log)")
    body = {"type": kind, "version": 1, "sequences": args.sequences, "reason": args.reason}
    reply = await _ask(args, verb, body)
    if args.json or not reply.get("ok"):
        return _show(reply, args.json)
    done = {"replayed", "dropped"}
    for result in reply["results"]:
        detail = f" ({result['detail']})" if result.get("detail") else ""
        print(f"{result['sequence']}  {result['outcome']}{detail}")
    # Anything not done (not found, not replayable) is a refusal the operator must see.
    return 0 if all(r["outcome"] in done for r in reply["results"]) else exit_codes.REFUSED


async def _ask(args: argparse.Namespace, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    from services.bus import subjects
    from services.cli.engine import EngineClient
    from services.cli.errors import UsageError

    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR_ROLES, args.operator_id)
        if not operator:
            raise UsageError("say who acts: --operator-id OP (no credential names one)")
        return await engine.request(f"{subjects.DLQ_API_PREFIX}.{verb}.{operator}", body)


def _show(reply: dict[str, Any], as_json: bool) -> int:
    from services.cli.intents import show_reply

    return show_reply(reply, as_json=as_json)
