"""``corridor release``: make a release key, sign a release directory, verify one (ADR 0185).

``keygen`` and ``sign`` run where the release key is (offline, ADR 0186); ``verify`` runs
anywhere, with nothing but the release directory and the keyring the operator pinned. Exit
codes: 0 verified, 3 a release that does not verify (every problem named), 2 a usage mistake
(no such key file, an unreadable keyring).

Registering is stdlib-only; the handlers import what they need when they run (ADR 0020).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from services.cli import exit_codes

GROUP_HELP: Final = "signed releases: keygen, sign a release directory, verify one (ADR 0185)"


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option

    group = subparsers.add_parser("release", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="release_command", required=True, metavar="COMMAND")

    keygen = sub.add_parser(
        "keygen", help="make a release key (mode 0600) and list its public half in a keyring"
    )
    keygen.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the private key (new file)"
    )
    keygen.add_argument(
        "--keyring", type=Path, metavar="FILE",
        help="the public keyring to add the key to, created if absent (default FILE.pub.json)",
    )  # fmt: skip
    keygen.add_argument(
        "--valid-from", type=_time, metavar="T",
        help="RFC 3339 time from which the key may sign (default: no lower bound)",
    )  # fmt: skip
    keygen.add_argument("--comment", default="", help="who holds the key, or the ticket")
    json_option(keygen, "the key id and public key")
    keygen.set_defaults(handler="services.release.cli:keygen")

    sign = sub.add_parser(
        "sign", help="write DIR/manifest.json (every file's size and sha256) and its signature"
    )
    sign.add_argument("--key", type=Path, required=True, metavar="FILE",
                      help="the release private key (`release keygen`)")  # fmt: skip
    _dir_option(sign)
    sign.add_argument("--version", required=True, help="the release's version, e.g. 0.1.0")
    sign.add_argument("--git-commit", required=True, metavar="SHA",
                      help="the commit the release was built from (40 hex)")  # fmt: skip
    sign.add_argument(
        "--created-at", type=_time, metavar="T",
        help="RFC 3339 time the release was made (default now; `make release` gives the "
        "commit's time, so the manifest is reproducible)",
    )  # fmt: skip
    json_option(sign, "the manifest")
    sign.set_defaults(handler="services.release.cli:sign")

    verify = sub.add_parser(
        "verify",
        help="check the manifest's signature against a pinned keyring and every artefact's "
        "digest; exit 3 naming each problem",
    )
    _dir_option(verify)
    verify.add_argument(
        "--keyring", type=Path, required=True, metavar="FILE",
        help="the release public keys you pinned (never the copy inside the release itself)",
    )  # fmt: skip
    json_option(verify, "the result")
    verify.set_defaults(handler="services.release.cli:verify")


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=Path("dist/release"), metavar="DIR",
        help="the release directory (default dist/release)",
    )  # fmt: skip


def _time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text[:64]!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. Z): {text[:64]!r}")
    return when


def keygen(args: argparse.Namespace) -> int:
    from services.cli import output
    from services.cli.errors import UsageError
    from services.release.keys import add_to_keyring, generate_key
    from services.signing.port import KeyFileError

    keyring = args.keyring or args.out.with_name(args.out.name + ".pub.json")
    try:
        signer = generate_key(args.out)
        entry = add_to_keyring(
            keyring, signer.public_key, valid_from=args.valid_from, comment=args.comment
        )
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    view = {"key_id": entry.key_id, "public_key": entry.public_key,
            "private_key_file": str(args.out), "keyring": str(keyring)}  # fmt: skip
    if args.json:
        output.print_json(view)
        return exit_codes.OK
    print(f"key_id      {entry.key_id}")
    print(f"public_key  {entry.public_key}")
    print(f"private key in {args.out} (mode 0600): keep it offline (runbooks/key-rotation.md)")
    print(f"public key listed in {keyring}: publish it with the release; operators pin it")
    return exit_codes.OK


def sign(args: argparse.Namespace) -> int:
    from datetime import UTC

    import msgspec

    from services.cli import output
    from services.cli.errors import UsageError
    from services.release.manifest import MANIFEST_FILE, sign_release
    from services.signing.file_keys import load_signer
    from services.signing.port import KeyFileError

    created_at = args.created_at or datetime.now(UTC)
    try:
        signer = load_signer(args.key)
        manifest = sign_release(
            args.dir, signer, version=args.version, git_commit=args.git_commit,
            created_at=created_at,
        )  # fmt: skip
    except (KeyFileError, ValueError) as exc:  # msgspec.ValidationError is a ValueError
        raise UsageError(str(exc)) from None
    if args.json:
        output.print_json(msgspec.to_builtins(manifest))
        return exit_codes.OK
    for artefact in manifest.artefacts:
        print(f"{artefact.sha256}  {artefact.size:>10}  {artefact.name}")
    print(f"signed {args.dir / MANIFEST_FILE} with key {signer.key_id}")
    return exit_codes.OK


def verify(args: argparse.Namespace) -> int:
    import sys

    import msgspec

    from services.cli import output
    from services.cli.errors import UsageError
    from services.release.keys import read_keyring
    from services.release.manifest import ReleaseInvalid, verify_release
    from services.signing.port import KeyFileError

    try:
        trusted = read_keyring(args.keyring)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    try:
        manifest = verify_release(args.dir, trusted)
    except ReleaseInvalid as exc:
        if args.json:
            output.print_json({"ok": False, "problems": msgspec.to_builtins(exc.problems)})
        for problem in exc.problems:
            print(f"corridor: release verify: {problem.code}: {problem.message}", file=sys.stderr)
        return exit_codes.VERIFICATION_FAILED
    if args.json:
        output.print_json({"ok": True, "manifest": msgspec.to_builtins(manifest)})
        return exit_codes.OK
    print(
        f"verified corridor {manifest.version} (commit {manifest.git_commit[:12]}): "
        f"{len(manifest.artefacts)} artefacts, signature good"
    )
    return exit_codes.OK
