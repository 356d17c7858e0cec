"""``corridor pilot report``: go or no-go per corridor, over consecutive windows ending now.

It reads the projections (intent documents and reconciliation items, ADR 0152), never the log,
and computes through ``services.domain.pilot``, the code the demo's report uses (ADR 0155).
Exit codes: 0 when every corridor shown is go, ``exit_codes.NO_GO`` (4) when one is not,
``USAGE`` (2) for a bad window, thresholds file or corridor, or no stack.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

GROUP_HELP: Final = "pilot metrics per corridor and window, judged go or no-go against thresholds"
REPORT_HELP: Final = (
    "go or no-go per corridor over the last N consecutive windows (one good week proves nothing)"
)
# Read from the CLI's own settings, as `corridor recon` does: the corridor table says which
# nodes' reconciliation items count for a corridor.
_NODE_DEFAULT_SUFFIX: Final = "-lnd"


class PilotSource(Protocol):
    """What the report reads: ``projections.store.ProjectionStore`` has both."""

    async def intent_docs(
        self, *, received_from_ms: int, received_to_ms: int
    ) -> list[dict[str, Any]]: ...

    async def reconciliation_docs(self) -> list[dict[str, Any]]: ...


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("pilot", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="pilot_command", required=True, metavar="COMMAND")
    report = sub.add_parser("report", help=REPORT_HELP, description=REPORT_HELP)
    report.add_argument(
        "--window", default="7d", metavar="SPAN",
        help="one window's length in hours or days, 1h..90d (default 7d)",
    )  # fmt: skip
    report.add_argument(
        "--windows", type=int, default=2, metavar="N",
        help="how many consecutive windows, ending now, must each pass (1..12, default 2)",
    )  # fmt: skip
    report.add_argument("--corridor", metavar="NAME", help="judge this corridor only")
    report.add_argument(
        "--thresholds", type=Path, metavar="FILE",
        help="a thresholds TOML file (default: the shipped services/pilot/thresholds/v1.toml)",
    )  # fmt: skip
    state_dir_option(report, creds=False)
    json_option(report, "the report (figures, checks and verdicts)")
    report.set_defaults(handler="services.pilot.cli:run_report")


async def pilot_report(
    source: PilotSource,
    *,
    window: str,
    windows: int,
    now_ms: int,
    thresholds_path: Path | None = None,
    corridor: str | None = None,
    nodes_by_corridor: Mapping[str, set[str]] | None = None,
) -> Any:
    """The ``PilotReport`` over what ``source`` holds; raises ``CorridorError`` subclasses
    (with ``field``) for a bad window, window count, thresholds file or corridor."""
    from services.domain.pilot import build_report, check_windows, parse_window
    from services.pilot.thresholds_file import DEFAULT_THRESHOLDS_PATH, load_thresholds

    window_ms = parse_window(window)
    check_windows(windows)
    thresholds = load_thresholds(thresholds_path)
    begin_ms = now_ms - windows * window_ms
    docs = await source.intent_docs(received_from_ms=begin_ms, received_to_ms=now_ms)
    items = await source.reconciliation_docs()
    return build_report(
        docs, items, now_ms=now_ms, window=window, window_ms=window_ms, count=windows,
        nodes_by_corridor=nodes_by_corridor if nodes_by_corridor is not None else {},
        thresholds=thresholds, thresholds_source=str(thresholds_path or DEFAULT_THRESHOLDS_PATH),
        only=corridor,
    )  # fmt: skip


async def run_report(args: argparse.Namespace) -> int:
    async with open_source(args.state_dir) as source:
        return await answer(args, source, now_ms=_now_ms())


async def answer(
    args: argparse.Namespace,
    source: PilotSource,
    *,
    now_ms: int,
    nodes_by_corridor: Mapping[str, set[str]] | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the report (or the error) for ``args`` and return the exit code."""
    import msgspec

    from schemas.errors import CorridorError
    from services.cli import exit_codes, output
    from services.pilot.render import render_report

    out = out or sys.stdout
    try:
        report = await pilot_report(
            source, window=args.window, windows=args.windows, now_ms=now_ms,
            thresholds_path=args.thresholds, corridor=args.corridor,
            nodes_by_corridor=(
                configured_corridors() if nodes_by_corridor is None else nodes_by_corridor
            ),
        )  # fmt: skip
    except CorridorError as exc:
        if args.json:
            error = msgspec.to_builtins(exc.detail())
            output.print_json({"ok": False, "error": error}, out=out)
        print(f"corridor pilot report: error: {exc.message}", file=sys.stderr)
        return exit_codes.USAGE
    if args.json:
        output.print_json(msgspec.to_builtins(report), out=out)
    else:
        out.write(render_report(report))
    return exit_codes.OK if report.verdict == "go" else exit_codes.NO_GO


def configured_corridors() -> dict[str, set[str]]:
    """Each configured corridor's node names (``region/node`` entries; ``region`` alone is
    the region's ``<region>-lnd``, as ``services.executor.fleet`` reads it)."""
    from services.settings import Settings

    return {
        name: {
            entry.partition("/")[2] or entry.partition("/")[0] + _NODE_DEFAULT_SUFFIX
            for entry in entries
        }
        for name, entries in Settings().corridors.items()
    }


@asynccontextmanager
async def open_source(state_dir: Path | None) -> AsyncIterator[PilotSource]:
    """The projection store of the stack at ``state_dir``, caught up first where the role may
    write the rows (``services.cli.projection_reads``, ADR 0152)."""
    from services.cli.projection_reads import projection_store

    async with projection_store(state_dir) as reader:
        yield reader


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
