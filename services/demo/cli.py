"""`corridor demo`: the pilot on embedded defaults, with a printed report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services.demo.report import render_table


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="run a seeded pilot workload end to end and print a pilot report"
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--intents", type=int, default=300)
    demo.add_argument("--json", type=Path, help="also write the report as JSON to FILE")
    demo.add_argument("--state-dir", type=Path, help="keep servers' data here (default: temp)")
    demo.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    from services.demo.run import run_demo
    from services.logging import configure_logging

    configure_logging("warning", cache=True)
    report = await run_demo(seed=args.seed, intents=args.intents, state_dir=args.state_dir)
    sys.stdout.write(render_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    # A double payment is the one result the pilot must never show.
    return 0 if report["double_payments"] == 0 else 3
