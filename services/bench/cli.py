"""`corridor bench`: print the figures as JSON and a table, and write them to a file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser("bench", help="measure Corridor against the machine's limits")
    bench.add_argument("--runs", type=int, default=3, help="repetitions per figure")
    bench.add_argument("--intents", type=int, default=2000, help="intents per end-to-end run")
    bench.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("bench/results.json"),
        metavar="FILE",
        help="write the figures as JSON to FILE (default bench/results.json)",
    )
    bench.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also sample the engine, the simulated network and the executors with py-spy "
        "during the first saturation run; collapsed stacks and a summary go to DIR",
    )
    bench.add_argument(
        "--scale",
        action="store_true",
        help="measure what limits scale-out instead of the baselines: the head-lock hold per "
        "append and its ceiling, CPU per intent by process, a 3-node R3 NATS cluster against "
        "one node (ADR 0197)",
    )
    bench.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    from services.bench.run import run_bench
    from services.bench.table import render
    from services.logging import configure_logging

    configure_logging("warning", cache=True)
    result = await run_bench(
        runs=args.runs,
        e2e_intents=args.intents,
        quick=args.quick,
        profile_dir=args.profile,
        scale=args.scale,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.write(render(result))
    return 0
