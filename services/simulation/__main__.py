"""``python -m services.simulation --seeds N [--seed S] [--json FILE]`` (ADR 0099, 0100).

Runs seeds ``S .. S+N-1``; prints each failing seed with its fault schedule and trace tail;
exits 1 on any violation."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

from services.simulation.world import STEPS, run_world

# Lines of a failing seed's trace printed (the whole trace is in the JSON).
TRACE_TAIL = 40


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.simulation")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds to run")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--steps", type=int, default=STEPS, help="faulted steps per seed")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--channel-opens",
        action="store_true",
        help="also run channel opens (ADR 0283; off: a known gap fails them)",
    )
    args = parser.parse_args(argv)
    violations: list[dict[str, Any]] = []
    faults: Counter[str] = Counter()
    intents = settled = two_engine_seeds = receives = receives_paid = 0
    rebalances = rebalances_succeeded = channel_opens = channel_opens_completed = 0
    virtual_s = 0.0
    # Throughput is the one wall-clock reading, and only for the report: no run depends on it.
    started = time.perf_counter()
    for seed in range(args.seed, args.seed + args.seeds):
        result = run_world(seed, steps=args.steps, channel_opens=args.channel_opens)
        faults.update(result.faults_injected)
        intents += result.intents
        settled += result.settled
        receives += result.receives
        receives_paid += result.receives_paid
        rebalances += result.rebalances
        rebalances_succeeded += result.rebalances_succeeded
        channel_opens += result.channel_opens
        channel_opens_completed += result.channel_opens_completed
        virtual_s += result.virtual_s
        two_engine_seeds += result.engines > 1
        schedule = result.plan.text()
        for violation, step in zip(result.violations, result.violation_steps, strict=True):
            violations.append({
                "seed": seed, "invariant": violation.invariant, "step": step,
                "subject": violation.subject, "evidence": violation.evidence,
                "schedule": schedule,
            })  # fmt: skip
        if result.violations:
            print(f"seed {seed}: {len(result.violations)} violations", file=sys.stderr)
            for violation in result.violations:
                print(f"  {violation.invariant} {violation.subject}: {violation.evidence}",
                      file=sys.stderr)  # fmt: skip
            print(schedule, file=sys.stderr)
            print("\n".join(result.trace[-TRACE_TAIL:]), file=sys.stderr)
    elapsed = time.perf_counter() - started
    report = {
        "seeds": args.seeds,
        "first_seed": args.seed,
        "steps": args.steps,
        "violations": violations,
        "seeds_per_s": round(args.seeds / elapsed, 2) if elapsed > 0 else None,
        "faults_injected": dict(sorted(faults.items())),
        "intents": intents,
        "settled": settled,
        "receives": receives,
        "receives_paid": receives_paid,
        "rebalances": rebalances,
        "rebalances_succeeded": rebalances_succeeded,
        "channel_opens": channel_opens,
        "channel_opens_completed": channel_opens_completed,
        "two_engine_seeds": two_engine_seeds,
        "virtual_s": round(virtual_s, 1),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.seeds} seeds ({two_engine_seeds} with two engines), {intents} intents "
          f"({settled} settled), {receives} receives ({receives_paid} paid), "
          f"{rebalances} rebalances ({rebalances_succeeded} succeeded), {channel_opens} "
          f"channel opens ({channel_opens_completed} completed), "
          f"{len(violations)} violations, "
          f"{report['seeds_per_s']} seeds/s; faults {report['faults_injected']}")  # fmt: skip
    return 1 if violations else 0


if __name__ == "__main__":
    # The engine logs every injected failure; thousands of lines would bury the verdict. Set
    # here, not in ``main``, so that a test calling ``main`` leaves the process's logging alone.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    sys.exit(main())
