"""The pilot report as text: outcomes, the fault timeline, timings, and what to try next.

Everything above "Timings" is the same on every run with the same seed (ADR 0030); the
timings are the only figures that depend on the machine.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from projections.pilot_metrics import VALUE_BANDS_MSAT
from services.demo.workload import CALLERS, CORRIDORS

RULE = "=" * 72
# Long lines are wrapped here, so the report reads on a 100-column terminal.
WIDTH = 100
LABEL = 23  # "Fee rate by band:      " and its siblings

# Where a newcomer goes after the demo: the demo's servers are gone, so start a stack of one's
# own. Commands and flags as `corridor --help` spells them (services/cli/main.py, sim/cli.py).
# A command without a note is printed alone on its line.
NEXT_COMMANDS: tuple[tuple[str, str], ...] = (
    ("corridor up", "terminal 1: the whole stack, until Ctrl-C"),
    ("corridor sim nodes", "terminal 2: the simulated nodes; merchant-02 is in eu"),
    ("corridor corridors", "each corridor's nodes, in the order routing tries them"),
    ("corridor policy show", "the policy behind the tiers above"),
    ("corridor sim invoice --node merchant-02 --amount-msat 5000000", ""),
    (
        "corridor submit --idempotency-key try-1 --corridor us-eu --amount-msat 5000000 \\\n"
        "      --payment-request <payment_request>",
        "as caller `local`; the fee budget is the most the policy allows",
    ),
    ("corridor watch --all --from-start", "every event, as JSON lines"),
    ("corridor get <intent_id>", "one intent's history; IntentRouted names refused nodes"),
    ("corridor sim fault offline us-lnd", "wait 5 s, submit with a new key: the route changes"),
    ("corridor exceptions", "what an operator must look at"),
    ("corridor replay --verify", "the whole log, its hash chain and signed checkpoints checked"),
    ("corridor demo --seed 8", "another pilot: the same seed gives the same report"),
)


def render_table(report: dict[str, Any], *, log_path: Path | None = None) -> str:
    lines = [
        "",
        f"Corridor pilot report: seed {report['seed']}, {report['intents']} intents",
        RULE,
        *_outcomes(report),
        "",
        "Timeline (faults follow the workload, not the clock)",
        *_timeline(report),
        "",
        "Timings (the only figures that change from run to run)",
        *_timings(report["timings"]),
        "",
    ]
    if log_path is not None:
        lines += [f"Logs: {log_path}", ""]
    lines += ["Next: run Corridor yourself (the demo's servers are stopped)", *_next(), ""]
    return "\n".join(lines)


def _outcomes(report: dict[str, Any]) -> list[str]:
    tiers = report["interventions_by_tier"]
    fee_ppm = report["fee_rate_ppm_by_band"]
    failures = report.get("failures_by_reason") or {}
    lines = [
        f"Workload:              {report['intents']} intents from {len(CALLERS)} callers over "
        f"{len(CORRIDORS)} corridors, in {report['waves']} waves",
        "Final states:          "
        + ", ".join(f"{state} {count}" for state, count in report["by_state"].items()),
        f"Settled:               {report['settled']} intents, "
        f"{report['settled_msat'] // 1000:,} sat, fees {report['fees_msat'] // 1000:,} sat",
        # In band order, also when the report was read back from JSON with sorted keys.
        _wrap(
            "Fee rate by band:      "
            + ", ".join(f"{band} {_ratio(fee_ppm.get(band))} ppm" for band, _ in VALUE_BANDS_MSAT),
            indent=LABEL,
        ),
        f"Route failure ratio:   {_ratio(report['route_failure_ratio'])} "
        "(failed or doubtful attempts per dispatch)",
        f"Auto-recovery rate:    {_ratio(report['auto_recovery_rate'])} "
        "(intents with a failed attempt that still settled)",
        f"Policy tiers:          auto {tiers['auto']}, review {tiers['review']}, "
        f"approval {tiers['approval']} (operator approved {tiers['operator_approved']}, "
        f"rejected {tiers['operator_rejected']})",
    ]
    if failures:
        lines.append("Failures by reason:    " + ", ".join(f"{r} {n}" for r, n in failures.items()))
    lines.append(
        f"Double payments:       {report['double_payments']} (from the network's own ledger)"
    )
    if report["waves_not_at_rest"] or report["faults_not_seen_by_router"]:
        lines.append(
            f"NOT REPRODUCIBLE:      {report['waves_not_at_rest']} waves did not come to rest, "
            f"routing did not see {report['faults_not_seen_by_router']} faults in time "
            "(see the log)"
        )
    return lines


def _timeline(report: dict[str, Any]) -> list[str]:
    lines = []
    for entry in report["timeline"]:
        lines.append(
            _wrap(
                f"  after intent {entry['after_intent']} "
                f"(log position {entry['log_position']}): {entry['what']}",
                indent=6,
            )
        )
        lines.append(_wrap(f"      Corridor: {entry['corridor_did']}", indent=16))
    lines.append(
        f"  after intent {report['intents']} (log position {report['log_position_at_end']}): "
        "every intent at rest"
    )
    return lines


def _timings(timings: dict[str, Any]) -> list[str]:
    latency = timings["latency_ms"]
    faults = ", ".join(f"{s} s" for s in timings["timeline_elapsed_s"]) or "-"
    return [
        f"  wall time {timings['wall_time_s']} s: servers up {timings['startup_s']} s, "
        f"workload {timings['workload_s']} s, report and shutdown {timings['shutdown_s']} s",
        f"  faults injected at {faults} into the workload",
        _wrap(
            f"  settlement latency p50 {latency['p50']} ms, p95 {latency['p95']} ms "
            "(IntentReceived to IntentSettled; approvals wait for the scripted operator)",
            indent=4,
        ),
    ]


def _next() -> list[str]:
    width = max(len(command) for command, note in NEXT_COMMANDS if note)
    return [
        f"  {command:<{width}}   # {note}" if note else f"  {command}"
        for command, note in NEXT_COMMANDS
    ]


def _wrap(text: str, *, indent: int) -> str:
    return textwrap.fill(text, width=WIDTH, subsequent_indent=" " * indent, break_on_hyphens=False)


def _ratio(value: float | None) -> str:
    return "-" if value is None else str(value)
