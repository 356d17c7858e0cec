"""``corridor agents``: the keys agents sign their commands with (ADR 0066, 0068).

``register``, ``rotate``, ``approve``, ``revoke`` and ``list`` ask the running engine: a key
is trusted once two people stood behind it, and every step is an event in the log. A human
principal (a caller credential of kind ``human``) or an operator proposes a key (``register``,
or ``rotate`` to replace an agent's live key); a different operator ``approve``s it; an
operator, or the human who sponsors the agent, ``revoke``s it, at once. ``keygen`` and ``sign``
are the integrator's side and run locally: make a key, and print the headers that sign a
command file, to test a client against.

Who acts is the credential's identity (``--creds``, ``CORRIDOR_CREDS``, else ``corridor up``'s
operator named by ``--as``, by default ``operator-1``).

Registering is stdlib-only; the handlers import what they need when they run (ADR 0020).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from services.cli import exit_codes

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.cli.engine import EngineClient

GROUP_HELP: Final = (
    "agent signing keys: register/rotate (propose), approve, revoke, list; keygen and sign"
)
PRIVATE_KEY_BYTES_MAX: Final = 4096
# The roles that change agent keys: an operator, or a human principal (a caller of kind human).
_ACTORS: Final = ("operator", "caller")


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("agents", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="agents_command", required=True, metavar="COMMAND")

    for name, what, handler in (
        ("register", "propose an agent's first signing key (another operator approves it)",
         "register_key"),
        ("rotate", "propose a new key for an agent; approving it revokes the old one",
         "rotate_key"),
    ):  # fmt: skip
        parser = sub.add_parser(name, help=what, description=what)
        _agent_id(parser)
        parser.add_argument(
            "--public-key",
            required=True,
            metavar="B64",
            help="the raw 32-byte Ed25519 public key, unpadded base64url (`agents keygen` "
            "prints it); write --public-key=B64, since a key may start with '-'",
        )
        parser.add_argument(
            "--amount-msat-max",
            type=int,
            metavar="N",
            help="refuse a command from this key asking more than N msat "
            "(agent_limit_exceeded); the policy still judges the rest",
        )
        parser.add_argument(
            "--window-s", type=int, metavar="S",
            help="with --window-msat-max: the key's rolling spend window, seconds",
        )  # fmt: skip
        parser.add_argument(
            "--window-msat-max", type=int, metavar="N",
            help="the most the key's intents may hold or have spent over --window-s "
            "(amount plus fee budget)",
        )  # fmt: skip
        parser.add_argument(
            "--sponsor", metavar="ID",
            help="the human responsible for the agent, recorded on its intents as "
            "on_behalf_of (an operator may name one; default: the proposer)",
        )  # fmt: skip
        if name == "rotate":
            parser.add_argument("--replaces", required=True, metavar="KEY_ID",
                                help="the agent's live key this one replaces")  # fmt: skip
        _common(parser, json_option, state_dir_option, "the proposed key")
        parser.set_defaults(handler=f"services.cli.agents:{handler}")

    approve = sub.add_parser(
        "approve", help="approve a proposed key: not its proposer, not its sponsor"
    )
    approve.add_argument("key_id", metavar="KEY_ID", help="the proposed key's id")
    _common(approve, json_option, state_dir_option, "the approved key")
    approve.set_defaults(handler="services.cli.agents:approve_key")

    revoke = sub.add_parser(
        "revoke", help="revoke an agent's keys (or one): its signatures are refused at once"
    )
    _agent_id(revoke)
    revoke.add_argument("--key-id", metavar="KEY_ID", help="only this key (default: every one)")
    _common(revoke, json_option, state_dir_option, "the revoked keys")
    revoke.set_defaults(handler="services.cli.agents:revoke_key")

    listing = sub.add_parser("list", help="every agent key the engine knows, with its status")
    _common(listing, json_option, state_dir_option, "the keys")
    listing.set_defaults(handler="services.cli.agents:list_keys")

    keygen = sub.add_parser(
        "keygen",
        help="make an Ed25519 key: private key to --out (mode 0600), print its id and public key",
    )
    keygen.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="where to write it (new file)"
    )
    json_option(keygen, "the key id and public key")
    keygen.set_defaults(handler="services.cli.agents:keygen")

    sign = sub.add_parser(
        "sign", help="print the NATS headers that sign a command file (to test a client)"
    )
    sign.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="the private key (`keygen`)"
    )
    sign.add_argument(
        "--file", type=Path, required=True, metavar="COMMAND.json", help="the command, as sent"
    )
    json_option(sign, "the headers")
    sign.set_defaults(handler="services.cli.agents:sign")


def _agent_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id", dest="agent_id", required=True, metavar="AGENT", help="the agent's id"
    )


def _common(parser: argparse.ArgumentParser, json_option: Any, state_dir_option: Any,
            what: str) -> None:  # fmt: skip
    parser.add_argument(
        "--as", dest="operator_id", metavar="ID",
        help="who acts (default: the credential's id; `corridor up` makes operator-1 and "
        "operator-2). Must match the credential, or identity_mismatch",
    )  # fmt: skip
    parser.add_argument("--note", default="", metavar="TEXT", help=argparse.SUPPRESS)
    state_dir_option(parser, None)
    json_option(parser, what)


def _actor(engine: EngineClient, args: argparse.Namespace) -> str:
    from services.cli.errors import UsageError

    actor = engine.credential.token(_ACTORS, args.operator_id)
    if not actor:
        raise UsageError("say who acts: --as ID (no credential names one)")
    return args.operator_id or actor


async def _send(args: argparse.Namespace, verb: str, body: dict[str, Any], field: str) -> int:
    from services.bus import subjects
    from services.cli.engine import EngineClient
    from services.cli.intents import show_reply

    async with EngineClient.open(args.state_dir) as engine:
        actor = _actor(engine, args)
        reply = await engine.request(
            f"{subjects.AGENTS_API_PREFIX}.{verb}.{actor}", {**body, field: actor}
        )
    if args.json or not reply.get("ok"):
        return show_reply(reply, as_json=args.json)
    _print_keys(reply.get("keys") or [])
    if reply.get("duplicate"):
        print("(already recorded: nothing changed)")
    return exit_codes.OK


def _limits(args: argparse.Namespace) -> dict[str, int]:
    wanted = {"amount_msat_max": args.amount_msat_max, "window_s": args.window_s,
              "window_msat_max": args.window_msat_max}  # fmt: skip
    return {k: v for k, v in wanted.items() if v is not None}


async def _propose(args: argparse.Namespace, replaces: str | None) -> int:
    body: dict[str, Any] = {
        "type": "ProposeAgentKey", "version": 1, "agent_id": args.agent_id,
        "public_key": args.public_key, "limits": _limits(args), "note": args.note,
    }  # fmt: skip
    if args.sponsor:
        body["sponsor_id"] = args.sponsor
    if replaces:
        body["replaces_key_id"] = replaces
    code = await _send(args, "propose", body, "proposer_id")
    if code == exit_codes.OK and not args.json:
        print("trusted once another operator runs `corridor agents approve KEY_ID --as OP`")
    return code


async def register_key(args: argparse.Namespace) -> int:
    return await _propose(args, None)


async def rotate_key(args: argparse.Namespace) -> int:
    return await _propose(args, args.replaces)


async def approve_key(args: argparse.Namespace) -> int:
    body = {"type": "ApproveAgentKey", "version": 1, "key_id": args.key_id, "note": args.note}
    return await _send(args, "approve", body, "approver_id")


async def revoke_key(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"type": "RevokeAgentKey", "version": 1, "agent_id": args.agent_id,
                            "note": args.note}  # fmt: skip
    if args.key_id:
        body["key_id"] = args.key_id
    return await _send(args, "revoke", body, "revoker_id")


def _print_keys(keys: list[dict[str, Any]]) -> None:
    from services.cli import output

    def limit(k: dict[str, Any]) -> str:
        lim = k.get("limits") or {}
        parts = []
        if lim.get("amount_msat_max") is not None:
            parts.append(f"{lim['amount_msat_max']}/cmd")
        if lim.get("window_s") is not None:
            parts.append(f"{lim['window_msat_max']}/{lim['window_s']}s")
        return " ".join(parts) or "-"

    output.print_table(
        ["AGENT", "KEY ID", "STATUS", "LIMITS (MSAT)", "SPONSOR", "PROPOSER", "APPROVER",
         "PUBLIC KEY"],
        [[k["agent_id"], k["key_id"], k["status"], limit(k), k["sponsor_id"],
          k["proposer_id"], k.get("approver_id") or "-", k["public_key"]] for k in keys],
    )  # fmt: skip


async def list_keys(args: argparse.Namespace) -> int:
    from services.bus import subjects
    from services.cli.engine import EngineClient
    from services.cli.intents import show_reply

    async with EngineClient.open(args.state_dir) as engine:
        reply = await engine.request(
            engine.credential.reader_subject(subjects.AGENTS_LIST),
            {"type": "ListAgentKeys", "version": 1},
        )
    if args.json or not reply.get("ok"):
        return show_reply(reply, as_json=args.json)
    keys = reply.get("keys") or []
    if not keys:
        print("no agent keys (`corridor agents register` proposes one)")
        return exit_codes.OK
    _print_keys(keys)
    return exit_codes.OK


def keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from services.cli.errors import UsageError
    from services.signing.port import b64url, key_id_for

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{args.out} exists: keygen never overwrites a key") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_key = key.public_key().public_bytes_raw()
    view = {"key_id": key_id_for(public_key), "public_key": b64url(public_key),
            "private_key_file": str(args.out)}  # fmt: skip
    if args.json:
        from services.cli import output

        output.print_json(view)
        return exit_codes.OK
    print(f"key_id      {view['key_id']}")
    print(f"public_key  {view['public_key']}")
    print(f"private key in {args.out} (mode 0600, PKCS#8 PEM): keep it with the agent only")
    return exit_codes.OK


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An agent's private key from a PEM file (`keygen` writes one), for signing commands."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from services.cli.errors import UsageError

    with path.open("rb") as src:
        data = src.read(PRIVATE_KEY_BYTES_MAX + 1)
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path} is no unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} holds no Ed25519 key")
    return key


def sign(args: argparse.Namespace) -> int:
    from schemas.errors import CorridorError
    from services.cli.errors import UsageError
    from services.identity.agent_signatures import sign_command

    key = load_private_key(args.key)
    body = args.file.read_bytes()
    try:
        headers = sign_command(key, body)
    except CorridorError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    if args.json:
        from services.cli import output

        output.print_json(headers)
        return exit_codes.OK
    for name, value in headers.items():
        print(f"{name}: {value}")
    return exit_codes.OK
