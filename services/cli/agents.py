"""``corridor agents``: the keys agents sign their commands with (ADR 0066).

``register``, ``rotate``, ``revoke`` and ``list`` edit ``STATE_DIR/auth/agent-keys.json``
directly: whoever holds the state dir decides. A running engine reads the change within a
second. (Proposing a key and having another operator approve it, as events in the log, is a
later step; ADR 0066 says so.) ``keygen`` and ``sign`` are the integrator's side: make a key,
and print the headers that sign a command file, to test a client against.

Registering is stdlib-only; the handlers import what they need when they run (ADR 0020).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from services.cli import exit_codes

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.identity.agent_keys import AgentKey, AgentKeys

GROUP_HELP: Final = "agent signing keys: register, rotate, revoke, list; keygen and sign"
DEFAULT_STATE_DIR: Final = Path(".corridor")
PRIVATE_KEY_BYTES_MAX: Final = 4096


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("agents", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="agents_command", required=True, metavar="COMMAND")

    for name, what, handler in (
        ("register", "register an agent's first signing key", "register_key"),
        ("rotate", "register a new key for an agent and revoke its old one", "rotate_key"),
    ):
        parser = sub.add_parser(name, help=what, description=what)
        _agent_id(parser)
        parser.add_argument(
            "--public-key",
            required=True,
            metavar="B64",
            help="the raw 32-byte Ed25519 public key, unpadded base64url (`agents keygen` "
            "prints it)",
        )
        parser.add_argument(
            "--amount-msat-max",
            type=int,
            metavar="N",
            help="refuse a command from this key asking more than N msat "
            "(agent_limit_exceeded); the policy still judges the rest",
        )
        state_dir_option(parser, DEFAULT_STATE_DIR)
        json_option(parser, "the registered key")
        parser.set_defaults(handler=f"services.cli.agents:{handler}")

    revoke = sub.add_parser(
        "revoke", help="revoke an agent's live key (or one key): its signatures are refused"
    )
    _agent_id(revoke)
    revoke.add_argument("--key-id", metavar="KEY_ID", help="only this key (default: every one)")
    state_dir_option(revoke, DEFAULT_STATE_DIR)
    revoke.set_defaults(handler="services.cli.agents:revoke_key")

    listing = sub.add_parser("list", help="every registered agent key, revoked ones too")
    state_dir_option(listing, DEFAULT_STATE_DIR)
    json_option(listing, "the keys")
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


def _view(key: AgentKey) -> dict[str, Any]:
    import msgspec

    view: dict[str, Any] = msgspec.to_builtins(key)
    return view


def _edit(args: argparse.Namespace, change: str) -> tuple[Path, AgentKeys, AgentKey | None]:
    import time

    from services.cli.errors import UsageError
    from services.identity.agent_keys import (
        InvalidAgentKey,
        agent_key,
        agent_keys_path,
        load_agent_keys,
        save_agent_keys,
    )

    path = agent_keys_path(args.state_dir)
    try:
        keys = load_agent_keys(path)
        key = None
        if change == "revoke":
            keys = keys.with_revoked(args.agent_id, args.key_id)
        else:
            key = agent_key(
                args.agent_id, args.public_key, amount_msat_max=args.amount_msat_max,
                now_ms=int(time.time() * 1000),
            )  # fmt: skip
            keys = keys.with_registered(key) if change == "register" else keys.with_rotated(key)
        save_agent_keys(path, keys)
    except InvalidAgentKey as exc:
        raise UsageError(str(exc)) from None
    return path, keys, key


def _warn_without_credential(state_dir: Path, agent_id: str) -> None:
    from services.identity.registry import load_registry, registry_path

    path = registry_path(state_dir)
    if path.exists() and load_registry(path).find("agent", agent_id) is None:
        print(f"warning: {path} has no live agent credential {agent_id!r}: its commands are "
              f"refused until `corridor creds add --role agent --id {agent_id}`",
              file=sys.stderr)  # fmt: skip


def register_key(args: argparse.Namespace) -> int:
    return _add(args, "register")


def rotate_key(args: argparse.Namespace) -> int:
    return _add(args, "rotate")


def _add(args: argparse.Namespace, change: str) -> int:
    path, _, key = _edit(args, change)
    assert key is not None
    _warn_without_credential(args.state_dir, args.agent_id)
    if args.json:
        from services.cli import output

        output.print_json(_view(key))
        return exit_codes.OK
    done = "registered" if change == "register" else "rotated to"
    print(f"{done} key {key.key_id} for agent {key.agent_id} in {path}")
    if key.limits.amount_msat_max is not None:
        print(f"limit: {key.limits.amount_msat_max} msat per command")
    print("a running engine takes it within a second")
    return exit_codes.OK


def revoke_key(args: argparse.Namespace) -> int:
    path, _, _ = _edit(args, "revoke")
    which = f"key {args.key_id}" if args.key_id else "every live key"
    print(f"revoked {which} of agent {args.agent_id} in {path}")
    return exit_codes.OK


def list_keys(args: argparse.Namespace) -> int:
    from services.cli import output
    from services.cli.errors import UsageError
    from services.identity.agent_keys import InvalidAgentKey, agent_keys_path, load_agent_keys

    path = agent_keys_path(args.state_dir)
    try:
        keys = load_agent_keys(path)
    except InvalidAgentKey as exc:
        raise UsageError(f"{path}: {exc}") from None
    rows = sorted(keys.keys, key=lambda k: (k.agent_id, k.created_at_ms))
    if args.json:
        output.print_json([_view(k) for k in rows])
        return exit_codes.OK
    if not rows:
        print(f"no agent keys in {path} (`corridor agents register` adds one)")
        return exit_codes.OK
    output.print_table(
        ["AGENT", "KEY ID", "AMOUNT MAX (MSAT)", "CREATED", "STATUS", "PUBLIC KEY"],
        [[k.agent_id, k.key_id,
          "-" if k.limits.amount_msat_max is None else k.limits.amount_msat_max,
          output.utc(k.created_at_ms) if k.created_at_ms else "-",
          "revoked" if k.revoked else "live", k.public_key] for k in rows],
    )  # fmt: skip
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
