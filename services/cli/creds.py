"""``corridor creds``: the NATS credentials of a stack: add, list, revoke (ADR 0060).

A credential is an nkey user: its seed goes to the file ``add --out`` names (mode 0600) and to
nobody else; its public key goes to the registry (``STATE_DIR/auth/credentials.json``), from
which the dev stack's nats-server config is rendered. When ``corridor up`` runs on the state dir,
``add`` and ``revoke`` rewrite that config and reload the server (SIGHUP), and return once it
serves the change: a revoked credential's open connections are closed at that moment.

Registering is stdlib-only; the handlers import what they need when they run (ADR 0020).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from services.cli import exit_codes

if TYPE_CHECKING:
    from services.identity.registry import CallerKind, Credential

GROUP_HELP: Final = "NATS credentials: add, list and revoke who may connect, and as what"
# The registry's roles (services/identity/registry.py ROLES), copied so registering stays
# stdlib-only; tests/unit/test_creds_cli_roles.py keeps the two equal.
ROLES: Final = (
    "caller",
    "agent",
    "operator",
    "executor",
    "auditor",
    "engine",
    "reconciler",
    "gateway",
)
DEFAULT_STATE_DIR: Final = Path(".corridor")


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("creds", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="creds_command", required=True, metavar="COMMAND")

    add = sub.add_parser(
        "add",
        help="make a credential: its seed to --out, its public key to the registry",
        description="Make an nkey credential for a role. The seed goes to --out only (mode "
        "0600); the public key is registered, and a running `corridor up` on the state dir "
        "serves it at once.",
    )
    _role_and_id(add)
    add.add_argument(
        "--kind",
        choices=["service", "human"],
        help="a caller's kind, which sets its policy tier (default service; agents are agent)",
    )
    add.add_argument("--region", help="an executor's or reconciler's region (us, eu, ...)")
    add.add_argument(
        "--node", help="an executor's or reconciler's node, as the corridor table names it"
    )
    add.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="where to write the seed (new)"
    )
    add.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="the credential stops working after this long, e.g. 90d or 12h (default: never); "
        "corridor_credential_expiry_timestamp_seconds and the CredentialExpiringSoon alert "
        "warn a week before",
    )
    state_dir_option(add, DEFAULT_STATE_DIR)
    json_option(add, "the registered credential")
    add.set_defaults(handler="services.cli.creds:add")

    listing = sub.add_parser(
        "list", help="every registered credential, revoked ones too (public keys, no secret)"
    )
    state_dir_option(listing, DEFAULT_STATE_DIR)
    json_option(listing, "the credentials")
    listing.set_defaults(handler="services.cli.creds:list_credentials")

    revoke = sub.add_parser(
        "revoke",
        help="revoke a credential: its connections are closed and refused from now on",
    )
    _role_and_id(revoke)
    state_dir_option(revoke, DEFAULT_STATE_DIR)
    revoke.set_defaults(handler="services.cli.creds:revoke")


def _role_and_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, choices=ROLES, help="what the holder may do")
    parser.add_argument(
        "--id",
        dest="ident",
        metavar="ID",
        help="the holder's id, its subject token (an executor's is its node: default --node)",
    )


# A credential's lifetime: whole hours or days, from an hour to ten years.
_LIFETIME_UNITS_MS: Final = {"h": 3_600_000, "d": 86_400_000}
LIFETIME_MS_MAX: Final = 3650 * 86_400_000


def _lifetime_ms(text: str) -> int:
    from services.cli.errors import UsageError

    number, unit = text[:-1], text[-1:]
    if len(text) > 8 or unit not in _LIFETIME_UNITS_MS or not number.isdigit():
        raise UsageError(f"--expires-in: {text[:8]!r} is not a duration like 90d or 12h")
    lifetime_ms = int(number) * _LIFETIME_UNITS_MS[unit]
    if not 3_600_000 <= lifetime_ms <= LIFETIME_MS_MAX:
        raise UsageError("--expires-in: between 1h and 3650d")
    return lifetime_ms


def add(args: argparse.Namespace) -> int:
    from services.cli.errors import UsageError
    from services.identity import nats_auth

    ident = args.ident or (args.node if args.role in ("executor", "reconciler") else None)
    if not ident:
        raise UsageError("say whose credential it is: --id ID")
    if args.kind is not None and args.role != "caller":
        raise UsageError("--kind is a caller's (an agent's kind is agent)")
    kind: CallerKind | None = None
    if args.role == "caller":
        kind = "human" if args.kind == "human" else "service"
    elif args.role == "agent":
        kind = "agent"
    from services.identity.api_keys import API_KEY_ROLES, http_path

    api_key = args.role in API_KEY_ROLES
    expires_at_ms = None
    if args.expires_in is not None:
        import time

        expires_at_ms = time.time_ns() // 1_000_000 + _lifetime_ms(args.expires_in)
    credential = nats_auth.issue(
        args.state_dir, role=args.role, ident=ident, out=args.out, kind=kind,
        region=args.region, node=args.node, api_key=api_key, expires_at_ms=expires_at_ms,
    )  # fmt: skip
    served = _serve(args.state_dir)
    token_file = str(http_path(args.out)) if api_key else None
    if args.json:
        from services.cli import output

        output.print_json({**nats_auth.public_view(credential), "seed_file": str(args.out),
                           "api_key_file": token_file, "served": served})  # fmt: skip
        return exit_codes.OK
    print(f"added {_name(credential)}, public key {credential.public_key}")
    print(f"seed in {args.out} (mode 0600): its holder connects with --creds {args.out} "
          f"or CORRIDOR_CREDS={args.out}")  # fmt: skip
    if token_file is not None:
        print(f"HTTP API key in {token_file} (mode 0600): send it as "
              "`Authorization: Bearer <key>`")  # fmt: skip
    print(served)
    return exit_codes.OK


def list_credentials(args: argparse.Namespace) -> int:
    import time

    from services.cli import output
    from services.identity import nats_auth
    from services.identity.registry import load_registry, registry_path

    registry = load_registry(registry_path(args.state_dir))
    rows = sorted(registry.credentials, key=lambda c: (c.role, c.id, c.created_at_ms))
    if args.json:
        output.print_json([nats_auth.public_view(c) for c in rows])
        return exit_codes.OK
    if not rows:
        print(f"no credentials in {registry_path(args.state_dir)} (`corridor up` makes some)")
        return exit_codes.OK
    now_ms = time.time_ns() // 1_000_000
    output.print_table(
        ["ROLE", "ID", "KIND", "REGION", "NODE", "CREATED", "EXPIRES", "STATUS", "PUBLIC KEY"],
        [[c.role, c.id, c.kind or "-", c.region or "-", c.node or "-",
          output.utc(c.created_at_ms) if c.created_at_ms else "-",
          output.utc(c.expires_at_ms) if c.expires_at_ms else "-",
          "revoked" if c.revoked else "expired" if c.expired(now_ms) else "live", c.public_key]
         for c in rows],
    )  # fmt: skip
    return exit_codes.OK


def revoke(args: argparse.Namespace) -> int:
    from services.cli.errors import UsageError
    from services.identity import nats_auth

    if not args.ident:
        raise UsageError("say whose credential: --id ID")
    nats_auth.revoke(args.state_dir, role=args.role, ident=args.ident)
    print(f"revoked {args.role} {args.ident}")
    print(_serve(args.state_dir))
    return exit_codes.OK


def _name(credential: Credential) -> str:
    what = f"{credential.role} {credential.id}"
    if credential.kind and credential.role == "caller":
        what += f" ({credential.kind})"
    if credential.role == "executor":
        what += f" (region {credential.region}, node {credential.node})"
    return what


def _serve(state_dir: Path) -> str:
    """Reload the nats-server ``corridor up`` runs on ``state_dir``, if one does; what
    happened, as a line for the user."""
    from services.devstack.nats import reload_authorization
    from services.endpoints import FILE_NAME, read_endpoints_file
    from services.identity.registry import load_registry, registry_path

    path = state_dir / FILE_NAME
    try:
        endpoints = read_endpoints_file(path)
    except (OSError, ValueError):
        endpoints = {}
    pid, auth_file = endpoints.get("nats_pid"), endpoints.get("nats_auth_file")
    monitor_url = endpoints.get("nats_monitor_url")
    if endpoints.get("nats_url") and not pid:
        return (
            f"{path} names a NATS server this state dir does not run: give its administrator "
            "the registry, or render its authorization block from it"
        )
    if not (pid and auth_file and monitor_url) or not _is_nats_server(int(pid)):
        return f"no running `corridor up` on {state_dir}: the next one serves the change"
    reload_authorization(
        Path(auth_file), load_registry(registry_path(state_dir)), pid=int(pid),
        monitor_url=str(monitor_url),
    )  # fmt: skip
    return f"nats-server (pid {pid}) reloaded: the change is in force"


def _is_nats_server(pid: int) -> bool:
    """Whether ``pid`` is still a nats-server: a pid left in a stale endpoints.json may have
    been reused by another process, which must never get our SIGHUP."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    program = cmdline.split(b"\0", 1)[0]
    return program.endswith(b"nats-server")
