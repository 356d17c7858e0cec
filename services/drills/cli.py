"""``corridor drill backup-restore|region-failover``: operator drills against a running stack.

Registering the group imports nothing but the standard library (``corridor --help`` stays
light); each drill imports its parts when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

GROUP_HELP: Final = "operator drills under load: backup-restore, region-failover"


def register(subparsers: Any) -> None:
    from services.cli.parser import json_option, state_dir_option

    group = subparsers.add_parser("drill", help=GROUP_HELP, description=GROUP_HELP)
    sub = group.add_subparsers(dest="drill_command", required=True, metavar="COMMAND")

    backup = sub.add_parser(
        "backup-restore",
        help="take a live backup under load, restore it into a fresh PostgreSQL, prove it",
        description="Under a steady load: pg_dump (one consistent snapshot), restore into a "
        "fresh PostgreSQL, then prove the restored log: its audit export equals the live "
        "log's through the same position, its hash chain verifies, the read models rebuild "
        "equal, the relay republishes it into a fresh JetStream. Exit 3 if a check fails.",
    )
    _common(backup)
    backup.add_argument(
        "--backup-after", type=int, default=10, metavar="N",
        help="take the backup once N intents are accepted (default 10)",
    )  # fmt: skip
    backup.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="keep the dump, the restored server and the bundles here "
                        "(default: a temporary directory, removed)")  # fmt: skip
    state_dir_option(backup)
    json_option(backup, "the report")
    backup.set_defaults(handler="services.drills.cli:backup_restore")

    failover = sub.add_parser(
        "region-failover",
        help="take a region's nodes down under load; traffic moves, then returns",
        description="Under a steady load: take REGION's nodes offline in the simulated "
        "network, wait for settlements through other regions, bring them back, wait for "
        "settlements through REGION again; then the ledger check. Times are reported, not "
        "judged. Exit 3 if traffic did not move or return within --deadline-s, or the "
        "ledger check fails.",
    )
    _common(failover)
    failover.add_argument("--region", default="us", help="the region to take down (default us)")
    failover.add_argument("--deadline-s", type=float, default=90.0, metavar="S",
                          help="how long to wait for traffic to move, and to return (default "
                          "90)")  # fmt: skip
    state_dir_option(failover)
    json_option(failover, "the report")
    failover.set_defaults(handler="services.drills.cli:region_failover")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sim-state-dir", type=Path, metavar="DIR",
                        help="the state dir of `corridor sim up`, if not the stack's")  # fmt: skip
    parser.add_argument("--corridor", default="us-eu", help="the corridor to pay through "
                        "(default us-eu)")  # fmt: skip
    parser.add_argument(
        "--caller-id",
        metavar="ID",
        help="the caller the load submits as (default: the credential's id)",
    )
    parser.add_argument(
        "--intents",
        type=int,
        metavar="N",
        help="payments in the load (default 30; region-failover: 200, stopped once the "
        "region is back)",
    )
    parser.add_argument(
        "--rate", type=float, metavar="N",
        help="submits per second (default 20; region-failover: 5)",
    )  # fmt: skip
    parser.add_argument("--tag", default="", help="idempotency-key prefix of the load "
                        "(default: from the time)")  # fmt: skip


def _target(args: argparse.Namespace) -> Any:
    import sys

    from services.cli.errors import UsageError
    from services.drills.target import TargetError, find_target
    from services.logging import configure_logging
    from services.settings import Settings

    try:
        target = find_target(
            args.state_dir, args.sim_state_dir, creds=args.creds,
            caller_id=args.caller_id, corridor=args.corridor,
        )  # fmt: skip
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    # Log lines go to stderr: stdout is the report. Set once the drill will run.
    configure_logging(Settings().log_level, stream=sys.stderr)
    return target


def _intents(args: argparse.Namespace, default: int) -> int:
    from services.cli.errors import UsageError
    from services.drills.load import INTENTS_MAX

    n = default if args.intents is None else args.intents
    if not 1 <= n <= INTENTS_MAX:
        raise UsageError(f"--intents: 1..{INTENTS_MAX}")
    return int(n)


def _rate(args: argparse.Namespace, default: float) -> float:
    from services.cli.errors import UsageError
    from services.drills.load import RATE_PER_S_MAX

    rate = default if args.rate is None else args.rate
    if not 0 < rate <= RATE_PER_S_MAX:
        raise UsageError(f"--rate: above 0, at most {RATE_PER_S_MAX:.0f}")
    return float(rate)


async def backup_restore(args: argparse.Namespace) -> int:
    from services.cli.errors import UsageError
    from services.drills import backup_restore as drill

    intents = _intents(args, 30)
    if not 1 <= args.backup_after <= intents:
        raise UsageError("--backup-after: 1..--intents")
    options = drill.Options(
        intents=intents, backup_after=args.backup_after, work_dir=args.work_dir, tag=args.tag,
        rate_per_s=_rate(args, 20.0),
    )  # fmt: skip
    report = await drill.run(_target(args), options)
    report.print(as_json=args.json)
    return report.exit_code()


async def region_failover(args: argparse.Namespace) -> int:
    from services.cli.errors import UsageError
    from services.drills import region_failover as drill

    if not 1.0 <= args.deadline_s <= drill.DEADLINE_S_MAX:
        raise UsageError(f"--deadline-s: 1..{drill.DEADLINE_S_MAX:.0f}")
    options = drill.Options(
        region=args.region, intents=_intents(args, 200), deadline_s=args.deadline_s,
        tag=args.tag, rate_per_s=_rate(args, 5.0),
    )  # fmt: skip
    report = await drill.run(_target(args), options)
    report.print(as_json=args.json)
    return report.exit_code()
