"""`corridor demo`: the pilot on embedded defaults, with a printed report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The demo's screen is for its report; the logs go to a file the report names.
DEFAULT_LOG_FILE = Path(".corridor/demo/demo.log")
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="run a seeded pilot workload end to end and print a pilot report"
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        help="workload seed: same seed, same intents and faults (default 7)",
    )
    demo.add_argument(
        "--intents",
        type=int,
        default=300,
        help="how many payment intents the workload submits (default 300)",
    )
    demo.add_argument("--json", type=Path, help="also write the report as JSON to FILE")
    demo.add_argument("--state-dir", type=Path, help="keep servers' data here (default: temp)")
    demo.add_argument(
        "--events", type=Path, metavar="FILE",
        help="also write the event log to FILE as JSON lines, as `corridor replay` prints it",
    )  # fmt: skip
    demo.add_argument(
        "--log-file", type=Path,
        help=f"write the logs here (default: STATE_DIR/demo.log, or {DEFAULT_LOG_FILE})",
    )  # fmt: skip
    demo.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    from services.demo.report import render_table
    from services.demo.run import run_demo
    from services.demo.screen import Screen
    from services.logging import configure_logging

    if args.intents < 1:
        print("corridor demo: error: --intents must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    log_file = _fresh_log_file(args)
    configure_logging("info", cache=True, path=log_file)
    screen = Screen(sys.stderr)
    screen.say(f"corridor demo: seed {args.seed}, {args.intents} intents; logs in {log_file}")
    report = await run_demo(
        seed=args.seed, intents=args.intents, state_dir=args.state_dir, screen=screen,
        events_path=args.events,
    )  # fmt: skip
    sys.stdout.write(render_table(report, log_path=log_file))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    # A double payment is the one result the pilot must never show.
    return 0 if report["double_payments"] == 0 else 3


def _fresh_log_file(args: argparse.Namespace) -> Path:
    """The log file for this run, emptied: it holds this run's log only (before the loop is
    busy, so the blocking calls cost nothing)."""
    log_file: Path = args.log_file or (
        args.state_dir / "demo.log" if args.state_dir else DEFAULT_LOG_FILE
    )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    return log_file
