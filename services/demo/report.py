"""The pilot report as a readable table."""

from __future__ import annotations

from typing import Any


def render_table(report: dict[str, Any]) -> str:
    lines = [
        "",
        f"Corridor pilot report (seed {report.get('seed')}, {report['intents']} intents, "
        f"{report.get('wall_time_s')} s)",
        "-" * 64,
        "Final states:          "
        + ", ".join(f"{state} {count}" for state, count in report["by_state"].items()),
        f"Settled:               {report['settled']} "
        f"({report['settled_msat'] // 1000:,} sat, fees {report['fees_msat'] // 1000:,} sat)",
        f"Settlement latency:    p50 {report['latency_ms']['p50']} ms, "
        f"p95 {report['latency_ms']['p95']} ms",
        "Fee rate by band:      "
        + ", ".join(
            f"{band} {ppm if ppm is not None else '-'} ppm"
            for band, ppm in report["fee_rate_ppm_by_band"].items()
        ),
        f"Route failure ratio:   {report['route_failure_ratio']}",
        f"Auto-recovery rate:    {report['auto_recovery_rate']}",
        "Interventions by tier: "
        + ", ".join(f"{k} {v}" for k, v in report["interventions_by_tier"].items()),
        f"Double payments:       {report['double_payments']} (from the network's own ledger)",
        f"Faults injected:       {report.get('faults')}",
        "",
    ]
    return "\n".join(lines)
