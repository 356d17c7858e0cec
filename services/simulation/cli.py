"""``corridor simulate``: the deterministic simulation (ADR 0099, 0100), as a CLI command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "simulate",
        help="the deterministic simulation: seeded schedules and faults, checked invariants",
    )
    sim.add_argument("--seeds", type=int, default=300, help="how many seeds to run (default 300)")
    sim.add_argument("--seed", type=int, default=0, help="the first seed (replay one: --seeds 1)")
    sim.add_argument("--steps", type=int, help="faulted steps per seed (default: the runner's)")
    sim.add_argument("--json", type=Path, metavar="FILE", help="write the report here")
    sim.add_argument("--channel-opens", action="store_true", help="also channel opens (ADR 0283)")
    sim.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from services.simulation.__main__ import main

    argv = ["--seeds", str(args.seeds), "--seed", str(args.seed)]
    if args.steps is not None:
        argv += ["--steps", str(args.steps)]
    if args.json is not None:
        argv += ["--json", str(args.json)]
    if args.channel_opens:
        argv.append("--channel-opens")
    return main(argv)
