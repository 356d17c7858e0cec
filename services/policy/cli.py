"""``corridor policy``: check a file locally; show, propose and approve through the engine.

``check`` validates a document file and needs no stack. ``show`` prints the policy in force as
the running engine holds it (not the bundled default), ``propose`` and ``approve`` change it
under the two-person rule (ADR 0301). Registration imports only argparse; each verb imports
what it needs when it runs (ADR 0020).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from services.bus import subjects
from services.cli.exit_codes import OK, REFUSED

GROUP_HELP = "the policy in force: show it, check a file, propose and approve changes"
# Kept for importers from before the exit codes moved to services/cli/exit_codes.py.
EXIT_INVALID = REFUSED


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    policy = subparsers.add_parser("policy", help=GROUP_HELP, description=GROUP_HELP)
    verbs = policy.add_subparsers(dest="policy_command", required=True, metavar="VERB")

    check = verbs.add_parser(
        "check", help="validate a policy document file (YAML or JSON); needs no stack"
    )
    check.add_argument("file", type=Path, metavar="FILE", help="the document to validate")
    json_option(check, "the result")
    check.set_defaults(handler=run_check, state_dir=None)

    show = verbs.add_parser("show", help="print the policy in force, from the running engine")
    state_dir_option(show)
    show.add_argument(
        "--document", action="store_true",
        help="print only the document (YAML, or JSON with --json): a start for a proposal",
    )  # fmt: skip
    json_option(show, "the engine's PolicyView")
    show.set_defaults(handler=run_show)

    propose = verbs.add_parser(
        "propose", help="propose FILE as the next policy version (a second operator approves)"
    )
    state_dir_option(propose)
    propose.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help="the new document; its `version` must exceed the one in force",
    )
    propose.add_argument("--operator-id", required=True, metavar="OP", help="who proposes")
    propose.add_argument("--note", default="", help="a note recorded with the proposal")
    json_option(propose)
    propose.set_defaults(handler=run_propose)

    approve = verbs.add_parser(
        "approve", help="put a proposed version in force (not by its proposer)"
    )
    state_dir_option(approve)
    approve.add_argument("policy_version", type=int, metavar="VERSION",
                         help="the proposed version (see `corridor policy show`)")  # fmt: skip
    approve.add_argument("--operator-id", required=True, metavar="OP",
                         help="who approves: not the operator who proposed it")  # fmt: skip
    approve.add_argument("--note", default="", help="a note recorded with the approval")
    json_option(approve)
    approve.set_defaults(handler=run_approve)


def run_check(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    from services.cli.output import print_json
    from services.policy.loader import PolicyDocumentInvalid, load_policy

    out = out or sys.stdout
    try:
        document = load_policy(args.file)
    except PolicyDocumentInvalid as exc:
        if getattr(args, "json", False):
            error = {"code": exc.code, "message": exc.message, "field": exc.field}
            print_json({"file": str(args.file), "ok": False, "error": error}, out=out)
        else:
            print(f"{args.file}: invalid: {exc.message}", file=out)
        return REFUSED
    if getattr(args, "json", False):
        print_json({"file": str(args.file), "ok": True, "policy_version": document.version},
                   out=out)  # fmt: skip
    else:
        print(f"{args.file}: ok, policy version {document.version}", file=out)
    return OK


async def run_show(args: argparse.Namespace) -> int:
    from services.cli import output
    from services.cli.engine import EngineClient

    async with EngineClient.open(args.state_dir) as engine:
        view = await engine.policy_view()
    document = view.get("document", {})
    if args.document:
        if args.json:
            output.print_json(document)
        else:
            sys.stdout.write(_yaml(document))
        return OK
    if args.json:
        output.print_json(view)
        return OK
    described = f": {document['description']}" if document.get("description") else ""
    print(f"policy version {view.get('policy_version')} in force{described}")
    pending = view.get("pending") or []
    if pending:
        print("\npending proposals (a second operator approves with "
              "`corridor policy approve VERSION --operator-id OP`):")  # fmt: skip
        output.print_table(
            ["VERSION", "PROPOSED BY", "PROPOSED AT"],
            [[p.get("policy_version"), p.get("proposed_by"), output.utc(p.get("proposed_at_ms"))]
             for p in pending],
        )  # fmt: skip
    else:
        print("no pending proposals")
    print("\ndocument:")
    sys.stdout.write("".join(f"  {line}\n" for line in _yaml(document).splitlines()))
    return OK


def _yaml(document: dict[str, Any]) -> str:
    import yaml

    text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return text


async def run_propose(args: argparse.Namespace) -> int:
    import msgspec

    from services.cli.engine import EngineClient
    from services.cli.intents import show_reply
    from services.policy.loader import PolicyDocumentInvalid, load_policy

    try:
        document = load_policy(args.file)
    except PolicyDocumentInvalid as exc:
        print(f"corridor: {args.file}: invalid: {exc.message}", file=sys.stderr)
        return REFUSED
    body = {
        "type": "ProposePolicy", "version": 1, "policy_version": document.version,
        "document": msgspec.to_builtins(document), "proposer_id": args.operator_id,
        "note": args.note,
    }  # fmt: skip
    async with EngineClient.open(args.state_dir) as engine:
        reply = await engine.request(
            f"{subjects.POLICY_API_PREFIX}.propose.{args.operator_id}", body
        )
    code = show_reply(reply, as_json=args.json)
    if reply.get("ok") and not args.json:
        print(
            f"policy version {document.version} proposed by {args.operator_id}; it takes "
            f"effect when another operator runs `corridor policy approve {document.version} "
            "--operator-id OP`"
        )
    return code


async def run_approve(args: argparse.Namespace) -> int:
    from services.cli.engine import EngineClient
    from services.cli.intents import show_reply

    body = {
        "type": "ApprovePolicy", "version": 1, "policy_version": args.policy_version,
        "approver_id": args.operator_id, "note": args.note,
    }  # fmt: skip
    async with EngineClient.open(args.state_dir) as engine:
        reply = await engine.request(
            f"{subjects.POLICY_API_PREFIX}.approve.{args.operator_id}", body
        )
    code = show_reply(reply, as_json=args.json)
    if reply.get("ok") and not args.json:
        if reply.get("active_version") == args.policy_version:
            print(f"policy version {args.policy_version} is in force "
                  f"(approved by {args.operator_id})")  # fmt: skip
        else:
            print(f"policy version {args.policy_version} approved; version "
                  f"{reply.get('active_version')} is in force")  # fmt: skip
    return code
