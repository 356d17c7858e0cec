"""``corridor policy check FILE`` and ``corridor policy show [--json]``.

Wired by ``services.cli.main``: ``register`` adds the group; each verb sets ``handler``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import msgspec

from services.policy.loader import (
    DEFAULT_POLICY_PATH,
    PolicyDocumentInvalid,
    load_default_policy,
    load_policy,
)

EXIT_INVALID = 1


def register(subparsers: Any) -> None:
    policy = subparsers.add_parser("policy", help="validate or print policy documents")
    verbs = policy.add_subparsers(dest="policy_command", required=True)

    check = verbs.add_parser("check", help="validate a policy document (YAML or JSON)")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=run_check, state_dir=None)

    show = verbs.add_parser("show", help="print the default policy document")
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    show.set_defaults(handler=run_show, state_dir=None)


def run_check(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        document = load_policy(args.file)
    except PolicyDocumentInvalid as exc:
        print(f"{args.file}: invalid: {exc.message}", file=out)
        return EXIT_INVALID
    print(f"{args.file}: ok, policy version {document.version}", file=out)
    return 0


def run_show(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if not args.json:
        out.write(DEFAULT_POLICY_PATH.read_text())
        return 0
    document = load_default_policy()
    out.write(msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n")
    return 0
