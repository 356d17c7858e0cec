"""The ``corridor`` argument parser. Building it imports nothing but argparse (ADR 0020).

Each command names its handler as ``"module:function"``; ``main`` imports the module only when
the command runs. Plugin groups live in other packages and are known here by module name only:
``corridor --help`` lists them from ``PLUGINS`` without importing any, and a plugin's module is
imported when its group is on the command line (or for the full parser, ``build_parser()``).
"""

from __future__ import annotations

import argparse
import importlib
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from services.cli.exit_codes import epilog

DESCRIPTION: Final = textwrap.fill(
    "Corridor: an event-sourced Lightning settlement engine. Commands that talk to a stack "
    "find it through --state-dir DIR (DIR/endpoints.json, written by `corridor up`), else "
    "NATS_URL and DATABASE_URL, else .corridor/. They connect with --creds FILE, else "
    "CORRIDOR_CREDS, else the credential `corridor up` made in DIR/auth/ for their role.",
    width=79,
)

# (group, module with ``register(subparsers)``, one-line help shown by ``corridor --help``).
# The help must equal the one the module registers (tests/unit/test_cli_parser.py checks).
PLUGINS: Final = (
    (
        "sim",
        "services.sim.cli",
        "the simulated Lightning network: up, nodes, invoice, pay, payments, fault",
    ),
    (
        "executor",
        "services.executor.cli",
        "run a region executor paying dispatched intents through one node",
    ),
    (
        "policy",
        "services.policy.cli",
        "the policy in force: show it, check a file, propose and approve changes",
    ),
    (
        "demo",
        "services.demo.cli",
        "run a seeded pilot workload end to end and print a pilot report",
    ),
    ("bench", "services.bench.cli", "measure Corridor against the machine's limits"),
    (
        "simulate",
        "services.simulation.cli",
        "the deterministic simulation: seeded schedules and faults, checked invariants",
    ),
    (
        "liquidity",
        "services.cli.liquidity",
        "channels and liquidity of our nodes per region, with targets and alerts",
    ),
    (
        "recon",
        "services.cli.recon",
        "reconciliation with the nodes' records: run a pass, list, resolve, clear",
    ),
    (
        "creds",
        "services.cli.creds",
        "NATS credentials: add, list and revoke who may connect, and as what",
    ),
    (
        "dlq",
        "services.cli.dlq",
        "the dead-letter queue: list, replay or drop messages (audited)",
    ),
    (
        "audit",
        "services.audit.cli",
        "audit: export a range of the log to one file, verify one offline, an intent's timeline",
    ),
    (
        "release",
        "services.release.cli",
        "signed releases: keygen, sign a release directory, verify one (ADR 0185)",
    ),
    (
        "projections",
        "services.cli.read_models",
        "read models: keep them live, rebuild them (or prove rebuild equals live)",
    ),
    (
        "pilot",
        "services.pilot.cli",
        "pilot metrics per corridor and window, judged go or no-go against thresholds",
    ),
    (
        "http",
        "services.http.cli",
        "serve the HTTP API (OpenAPI at /openapi.json) in front of a running stack",
    ),
    (
        "receive",
        "services.cli.receives",
        "receive: an invoice on a node of a region, paid to us (prints JSON)",
    ),
    (
        "channels",
        "services.cli.channels",
        "channel opens and closes on our nodes, as operator intents (prints JSON)",
    ),
    (
        "lsp",
        "services.cli.lsp",
        "inbound channels from an external LSP over LSPS1: info, order, get",
    ),
    (
        "payees",
        "services.cli.payees",
        "payees: onboard contractors and employees to wallets they own, erase them",
    ),
    (
        "webhooks",
        "services.cli.webhooks",
        "webhooks for your settlement events: add, list, remove, history",
    ),
    (
        "agents",
        "services.cli.agents",
        "agent signing keys: register/rotate (propose), approve, revoke, list; keygen and sign",
    ),
    ("drill", "services.drills.cli", "operator drills under load: backup-restore, region-failover"),
)

_CALLER_KINDS: Final = ["human", "agent", "service"]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: only the plugin group named in it is imported. With ``None``,
    every plugin is (the full parser, for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="corridor",
        description=DESCRIPTION,
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _core_commands(sub)
    wanted = _command_word(argv)
    for name, module_name, help_text in PLUGINS:
        if argv is None or wanted == name:
            importlib.import_module(module_name).register(sub)
        else:
            # A stand-in, so the group shows in `corridor --help`; never parsed.
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_word(argv: Sequence[str] | None) -> str | None:
    """The command: the first argument that is not an option (top-level options take none)."""
    return next((a for a in argv or () if not a.startswith("-")), None)


def state_dir_option(
    parser: argparse.ArgumentParser, default: Path | None = None, *, creds: bool = True
) -> None:
    """``--state-dir``; and ``--creds`` too for a command that connects to NATS (every one
    that finds a running stack, unless ``creds`` is false: it reads only PostgreSQL)."""
    where = f"default {default}/" if default else "default: NATS_URL/DATABASE_URL, else .corridor/"
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default,
        metavar="DIR",
        help=f"the stack's state directory, holding endpoints.json ({where})",
    )
    if creds and default is None:
        creds_option(parser)


def creds_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--creds",
        type=Path,
        metavar="FILE",
        help="the NATS credential (nkey seed file) to connect with (default: CORRIDOR_CREDS, "
        "else the one `corridor up` made in STATE_DIR/auth/ for this command's role)",
    )


def json_option(parser: argparse.ArgumentParser, what: str = "the reply") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON, as-is")


def _command(
    sub: Any, name: str, handler: str, help_text: str, *, stack: bool = True, nats: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    if stack:
        state_dir_option(parser, creds=nats)
    return parser


def _core_commands(sub: Any) -> None:
    up = _command(
        sub,
        "up",
        "services.cli.up:run",
        "run NATS, PostgreSQL, the engine and the simulated network until Ctrl-C",
        stack=False,
    )
    state_dir_option(up, Path(".corridor"))
    up.add_argument(
        "--no-sim", action="store_true", help="do not start the simulated network or its executors"
    )
    up.add_argument(
        "--topology",
        type=Path,
        metavar="FILE",
        help="simulated network topology, YAML or JSON (default: built-in map)",
    )
    up.add_argument(
        "--seed",
        type=int,
        default=1,
        help="simulator seed: same seed, same keys and channel ids (default 1)",
    )
    up.add_argument(
        "--http-port", type=int, default=0, metavar="PORT",
        help="the HTTP API's port on 127.0.0.1 (default: a free one; http_url in endpoints.json)",
    )  # fmt: skip

    _submit(sub)

    get = _command(sub, "get", "services.cli.intents:get", "show an intent's state and history")
    get.add_argument("intent_id", metavar="INTENT_ID", help="the id a submit reply returned")
    json_option(get)

    for verb, what in (("approve", "release"), ("reject", "refuse")):
        decide = _command(
            sub,
            verb,
            "services.cli.intents:decide",
            f"{what} an intent waiting for an operator (tier approval)",
        )
        decide.add_argument("intent_id", metavar="INTENT_ID", help="the intent to decide")
        decide.add_argument(
            "--operator-id",
            metavar="OP",
            help="who decides (default: the credential's operator; its credential in "
            "STATE_DIR/auth/ is used if there is one)",
        )
        if verb == "reject":
            decide.add_argument("--reason", default="", help="why, recorded in the log")
        else:
            decide.add_argument("--note", default="", help="a note recorded in the log")
        json_option(decide)

    resolve = _command(
        sub,
        "resolve",
        "services.cli.intents:resolve",
        "end an intent its node never proved either way (on the wire, or succeeded without "
        "a valid preimage), with evidence; recorded as IntentResolved",
    )
    resolve.add_argument("intent_id", metavar="INTENT_ID", help="the intent to resolve")
    resolve.add_argument(
        "resolution",
        choices=("settled", "not_paid"),
        help="settled: paid, proven by --preimage; not_paid: fail it and release its spend",
    )
    resolve.add_argument(
        "--evidence", required=True, help="what was checked (e.g. the node's record), logged"
    )
    resolve.add_argument("--preimage", metavar="HEX", help="the payment's preimage (settled)")
    resolve.add_argument("--fee-msat", type=int, help="the fee the node's record shows (settled)")
    resolve.add_argument(
        "--operator-id",
        metavar="OP",
        help="who decides (default: the credential's operator)",
    )
    json_option(resolve)

    cancel = _command(
        sub,
        "cancel",
        "services.cli.intents:cancel",
        "cancel an intent that is not dispatched to a node yet",
    )
    cancel.add_argument("intent_id", metavar="INTENT_ID", help="the intent to cancel")
    cancel.add_argument(
        "--caller-id",
        metavar="ID",
        help="the caller that submitted the intent (default: the credential's caller)",
    )
    cancel.add_argument(
        "--caller-kind",
        choices=_CALLER_KINDS,
        help="the caller's kind (default: the registry's, else service)",
    )
    cancel.add_argument("--reason", default="", help="why, recorded in the log")
    cancel.add_argument(
        "--agent-key",
        type=Path,
        metavar="FILE",
        help="sign the command with this agent key (PEM, `corridor agents keygen`): agents "
        "must (ADR 0066)",
    )
    json_option(cancel)

    watch = _command(
        sub,
        "watch",
        "services.cli.watch:run",
        "print events as JSON lines, in log order, as they happen",
    )
    watch.add_argument(
        "--all", action="store_true", help="every event, not only settlement outcomes"
    )
    start = watch.add_mutually_exclusive_group()
    start.add_argument(
        "--from-start", action="store_true", help="start at the first event the stream holds"
    )
    start.add_argument(
        "--from-position",
        type=int,
        metavar="N",
        help="resume at log position N (an event's `position`)",
    )
    watch.add_argument("--count", type=int, metavar="N", help="exit after printing N events")

    replay = _command(
        sub,
        "replay",
        "services.cli.audit:replay",
        "print the event log as JSON lines, from PostgreSQL (audits, exports)",
        nats=False,
    )
    replay.add_argument(
        "--from-position",
        type=int,
        default=1,
        metavar="N",
        help="first log position to print (default 1)",
    )
    replay.add_argument("--stream", metavar="INTENT_ID", help="only this stream (an intent id)")
    replay.add_argument("--out", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    replay.add_argument(
        "--verify",
        action="store_true",
        help="verify the whole hash chain and the engine's signed checkpoints too; exit 3 "
        "if either fails",
    )
    replay.add_argument(
        "--keys",
        type=Path,
        metavar="FILE",
        help="the engine's public keys to verify checkpoints with (default: "
        "STATE_DIR/keys/engine-signing.pub.json)",
    )

    _exceptions(sub)

    corridors = _command(
        sub,
        "corridors",
        "services.cli.corridors:run",
        "the corridors the running engine routes, with ranked candidates",
    )
    json_option(corridors)


def _liquidity_wait_option(parser: argparse.ArgumentParser) -> None:
    from services.cli.liquidity import WAIT_S_DEFAULT

    parser.add_argument(
        "--wait-s", type=float, default=WAIT_S_DEFAULT, metavar="S",
        help="listen this long at most for the nodes' channel snapshots, for liquidity alerts "
        f"(default {WAIT_S_DEFAULT:g}; 0: leave them out)",
    )  # fmt: skip
    parser.add_argument("--operator-id", metavar="OP", help="the operator credential to use")


def _exceptions(sub: Any) -> None:
    """``exceptions [list|show|resolve|reprocess]``: bare ``exceptions`` lists (ADR 0161)."""
    group = _command(
        sub,
        "exceptions",
        "services.cli.audit:exceptions",
        "the operator exception queue: list, show, resolve, reprocess",
    )
    _stuck_after_option(group)
    _liquidity_wait_option(group)
    json_option(group, "the queue")
    actions = group.add_subparsers(dest="exceptions_command", metavar="ACTION")
    listing = _command(actions, "list", "services.cli.audit:exceptions",
                       "in doubt, unproven, escalated, anomalies, reconciliation items, "
                       "liquidity alerts")  # fmt: skip
    _stuck_after_option(listing)
    _liquidity_wait_option(listing)
    json_option(listing, "the queue")
    for verb, text in (
        ("show", "an exception with its intent's attempts, operator actions and timeline"),
        ("resolve", "close an exception with your reason and evidence (an operator command)"),
        ("reprocess", "ask the node again and act only on its proof; safe to repeat"),
    ):
        action = _command(actions, verb, f"services.cli.exception_actions:{verb}", text)
        action.add_argument("id", metavar="ID", help="an intent id, or a reconciliation item's key")
        _stuck_after_option(action)
        if verb != "show":
            action.add_argument("--kind", help="which of the ID's exceptions (see `show`)")
            action.add_argument("--operator-id", metavar="OP",
                                help="who acts (default: the credential's operator)")  # fmt: skip
        if verb == "resolve":
            action.add_argument("--reason", required=True, help="why, recorded in the log")
            action.add_argument(
                "--evidence", metavar="FILE_OR_TEXT",
                help="what you checked: a file's contents, or the text (kept in the event)",
            )  # fmt: skip
            outcome = action.add_mutually_exclusive_group()
            outcome.add_argument(
                "--settled", metavar="PREIMAGE", help="on the wire or unproven: paid, proven so"
            )
            outcome.add_argument(
                "--not-paid", action="store_true", help="on the wire or unproven: fail it"
            )
            action.add_argument("--fee-msat", type=int, help="the fee the node's record shows")
        if verb == "reprocess":
            action.add_argument("--node-uri", metavar="URI",
                                help="reach the node here (lnd://, cln://; default: the "
                                "simulated node of that name in STATE_DIR)")  # fmt: skip
        json_option(action)


def _stuck_after_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stuck-after-s",
        type=int,
        default=120,
        metavar="S",
        help="a payment on the wire longer than S seconds is in doubt (default 120)",
    )


def _submit(sub: Any) -> None:
    submit = _command(
        sub,
        "submit",
        "services.cli.intents:submit",
        "submit a payment intent and print the engine's reply",
    )
    submit.add_argument(
        "--file",
        metavar="FILE",
        help="send the whole SubmitPaymentIntent from FILE ('-' for stdin) "
        "instead of the flags below",
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="names the intent with the caller id: the same key again returns the same intent",
    )
    submit.add_argument(
        "--caller-id",
        metavar="ID",
        help="who pays (default: the credential's caller; its credential in STATE_DIR/auth/ "
        "is used if there is one)",
    )
    submit.add_argument(
        "--caller-kind",
        choices=_CALLER_KINDS,
        help="the caller's kind; the policy sets its autonomy (default: the registry's, "
        "else service)",
    )
    submit.add_argument(
        "--corridor",
        default="us-eu",
        help="corridor to route through (see `corridor corridors`; default us-eu)",
    )
    submit.add_argument("--amount-msat", type=int, metavar="MSAT", help="amount to pay, msat")
    submit.add_argument(
        "--max-fee-msat",
        type=int,
        metavar="MSAT",
        help="fee budget, msat (default: the most the policy in force allows "
        "for the amount, asked from the engine)",
    )
    target = submit.add_mutually_exclusive_group()
    target.add_argument("--payment-request", metavar="BOLT11", help="the invoice to pay")
    target.add_argument(
        "--destination", metavar="PUBKEY", help="pay this node by keysend (66 hex characters)"
    )
    submit.add_argument(
        "--deadline-s", type=int, metavar="S", help="give up if not paid within S seconds"
    )
    submit.add_argument(
        "--payee-id", metavar="PAYEE_ID",
        help="an onboarded payee (`corridor payees list`): the invoice must be their wallet's",
    )  # fmt: skip
    submit.add_argument(
        "--metadata",
        nargs="*",
        metavar="KEY=VALUE",
        help="caller metadata recorded with the intent",
    )
    submit.add_argument(
        "--agent-key",
        type=Path,
        metavar="FILE",
        help="sign the command with this agent key (PEM, `corridor agents keygen`): agents "
        "must (ADR 0066)",
    )
    json_option(submit)
