"""``corridor audit export|verify``: the offline-verifiable audit bundle (ADR 0150).

``export`` reads the log from PostgreSQL (through the ``EventStore`` port) and writes one
file; ``verify`` checks such a file with nothing else: no database, no NATS, no stack. This
module imports only the standard library at the top, so ``corridor --help`` stays light.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from services.signing.port import Verifier

GROUP_HELP: Final = (
    "audit: export a range of the log to one file, verify one offline, an intent's timeline"
)
TIME_HELP: Final = "ISO-8601, e.g. 2026-11-30T12:00:00Z or 2026-11-30T13:00+01:00 (no zone: UTC)"
# An ISO-8601 time is at most ~35 characters; anything far longer is not one.
TIME_CHARS_MAX: Final = 64
# A public key given inline is 43 base64url characters; a keyring file is read by path.
_INLINE_KEY_CHARS: Final = 43


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("audit", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    export = sub.add_parser(
        "export",
        help="write a range of the log, with its chain hashes and signed checkpoints, to FILE",
        description="Write one self-contained UTF-8 file: a manifest line, then the range's "
        "events, one per line, as the log holds them. Times are " + TIME_HELP + ".",
    )
    export.add_argument(
        "--from-position", type=int, default=1, metavar="N", help="first position (default 1)"
    )
    export.add_argument(
        "--to-position", type=int, metavar="M", help="last position (default: the head)"
    )
    export.add_argument(
        "--from", dest="from_time", metavar="T", help="start at the first event recorded at "
        "or after T; " + TIME_HELP,
    )  # fmt: skip
    export.add_argument(
        "--to", dest="to_time", metavar="T", help="end before the first event recorded after "
        "T; " + TIME_HELP,
    )  # fmt: skip
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="the bundle")
    state_dir_option(export, creds=False)
    json_option(export, "the manifest")
    export.set_defaults(handler="services.audit.cli:export")

    verify = sub.add_parser(
        "verify",
        help="check a bundle offline (no database, no NATS); exit 3 naming each broken line",
        description="Check a bundle with nothing but the file: exit 0 if intact, 3 if not, "
        "naming the line of every edit, deletion, insertion or reordering.",
    )
    verify.add_argument("file", type=Path, metavar="FILE", help="the bundle to check")
    verify.add_argument(
        "--public-key",
        metavar="K",
        help="the engine's public key: its keyring file (STATE_DIR/keys/engine-signing.pub."
        "json) or the key in base64url; checks the checkpoints and reports the unsigned tail",
    )
    json_option(verify, "the problems as a list of {line, problem, message}")
    verify.set_defaults(handler="services.audit.cli:verify")

    timeline = sub.add_parser(
        "timeline",
        help="an intent's audit timeline (who asked, policy, routes, attempts, operators), or "
        "the intents matching --caller/--corridor/--from/--to",
        description="From the projection tables, never a scan of the log (ADR 0152). Times "
        "are " + TIME_HELP + "; --from/--to filter on the time an intent was received.",
    )
    timeline.add_argument("intent_id", nargs="?", metavar="INTENT_ID", help="one intent")
    timeline.add_argument("--caller", metavar="ID", help="the caller's authenticated id")
    timeline.add_argument("--corridor", metavar="C", help="the corridor, e.g. us-eu")
    timeline.add_argument("--from", dest="from_time", metavar="T", help="received at or after T")
    timeline.add_argument("--to", dest="to_time", metavar="T", help="received before T")
    timeline.add_argument("--limit", type=int, default=50, metavar="N", help="rows (default 50)")
    state_dir_option(timeline, creds=False)
    json_option(timeline, "the intent's document (or the matching documents)")
    timeline.set_defaults(handler="services.audit.timeline:timeline")


def parse_time(text: str, flag: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 time (no zone: UTC)."""
    from services.cli.errors import UsageError

    if len(text) > TIME_CHARS_MAX:
        raise UsageError(f"{flag}: longer than {TIME_CHARS_MAX} characters")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not an ISO-8601 time ({TIME_HELP})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.year < 1970:
        raise UsageError(f"{flag}: {text!r} is before 1970")
    return int(moment.timestamp() * 1000)


async def export(args: argparse.Namespace) -> int:
    from services.audit.bundle import POSITION_MAX
    from services.audit.export import ExportError, export_bundle
    from services.cli import exit_codes, output
    from services.cli.errors import UsageError
    from services.endpoints import find_stack
    from services.eventstore.postgres import PostgresEventStore

    if not 1 <= args.from_position <= POSITION_MAX:
        raise UsageError("--from-position counts from 1")
    if args.to_position is not None and not args.from_position <= args.to_position:
        raise UsageError("--to-position must be at least --from-position")
    from_ms = None if args.from_time is None else parse_time(args.from_time, "--from")
    to_ms = None if args.to_time is None else parse_time(args.to_time, "--to")
    if from_ms is not None and to_ms is not None and to_ms < from_ms:
        raise UsageError("--to is before --from")
    out = args.out.resolve()
    stack = find_stack(args.state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    try:
        manifest = await export_bundle(
            store, out, from_position=args.from_position, to_position=args.to_position,
            from_ms=from_ms, to_ms=to_ms, now_ms=time.time_ns() // 1_000_000,
        )  # fmt: skip
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    finally:
        await store.close()
    if args.json:
        import msgspec

        output.print_json(msgspec.to_builtins(manifest))
    else:
        print(
            f"wrote {args.out}: {manifest.event_count} events, positions "
            f"{manifest.from_position}..{manifest.to_position}, "
            f"{len(manifest.checkpoints)} signed checkpoints"
        )
    return exit_codes.OK


def verify(args: argparse.Namespace) -> int:
    import msgspec

    from services.audit.bundle import LINE_BYTES_MAX
    from services.audit.verify import verify_bundle
    from services.cli import exit_codes

    verifier = None if args.public_key is None else _verifier(args.public_key)
    with args.file.open("rb") as handle:
        report = verify_bundle(bounded_lines(handle, LINE_BYTES_MAX), verifier=verifier)
    if args.json:
        print(msgspec.json.encode(list(report.problems)).decode())
        summary = msgspec.to_builtins(report)
        summary.pop("problems")
        sys.stderr.write(msgspec.json.encode(summary).decode() + "\n")
    else:
        _print_report(report)
    return exit_codes.OK if report.ok else exit_codes.VERIFICATION_FAILED


def bounded_lines(handle: IO[bytes], line_bytes_max: int) -> Iterator[bytes]:
    """The lines of ``handle``, each with its newline; a line longer than ``line_bytes_max``
    is given as its first ``line_bytes_max + 2`` bytes (the rest is read past, not held)."""
    while line := handle.readline(line_bytes_max + 2):
        if len(line) > line_bytes_max + 1 and not line.endswith(b"\n"):
            while rest := handle.readline(line_bytes_max + 2):
                if rest.endswith(b"\n"):
                    break
        yield line


def _verifier(key: str) -> Verifier:
    """The engine's public keys: a keyring file, or one key inline (base64url)."""
    from services.cli.errors import UsageError
    from services.signing.ed25519 import Ed25519Keyring
    from services.signing.file_keys import read_public_keys
    from services.signing.port import PUBLIC_KEY_BYTES, KeyFileError, from_b64url

    path = Path(key)
    if len(key) == _INLINE_KEY_CHARS and not path.exists():
        try:
            raw = from_b64url(key)
        except ValueError:
            raw = b""
        if len(raw) != PUBLIC_KEY_BYTES:
            raise UsageError("--public-key: not a base64url Ed25519 public key")
        return Ed25519Keyring([raw])
    try:
        return read_public_keys(path)
    except KeyFileError as exc:
        raise UsageError(f"--public-key: {exc}") from None


def _print_report(report: Any) -> None:
    span = (
        f"positions {report.from_position}..{report.to_position}"
        if report.from_position is not None
        else "no readable manifest"
    )
    for problem in report.problems:
        print(f"line {problem.line}: {problem.problem}: {problem.message}")
    if report.problems_total > len(report.problems):
        print(f"... and {report.problems_total - len(report.problems)} more problems")
    verdict = "intact" if report.ok else f"BROKEN ({report.problems_total} problems)"
    print(f"bundle {verdict}: {report.events} event lines, {span}")
    if report.checkpoints_checked:
        print(
            f"checkpoints: {report.checkpoints_valid} valid, newest at position "
            f"{report.newest_checkpoint_position}; unsigned tail: {report.unsigned_tail} events"
        )
    else:
        print("checkpoints: not checked (no --public-key): the bundle is only self-consistent")
