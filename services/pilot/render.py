"""The pilot report as text: per corridor its verdict, the failing checks, and every check's
figure per window beside the limit (the evidence)."""

from __future__ import annotations

from schemas.pilot import Check, CorridorVerdict, PilotReport
from services.cli import output

_MARK = {"pass": "ok", "fail": "FAIL"}


def render_report(report: PilotReport) -> str:
    lines = [
        f"Pilot report: {report.windows} window(s) of {report.window} ending "
        f"{output.utc(report.now_ms)}; thresholds v{report.thresholds_version} "
        f"({report.thresholds_source})",
    ]
    if report.corridors:
        for w in report.corridors[0].windows:
            lines.append(f"  window {w.index}: {output.utc(w.start_ms)} .. {output.utc(w.end_ms)}")
    lines.append("")
    for corridor in report.corridors:
        lines += _corridor(corridor)
    shown = ", ".join(f"{c.corridor} {c.verdict}" for c in report.corridors) or "no corridors"
    lines.append(f"Verdict: {report.verdict} ({shown})")
    return "\n".join(lines) + "\n"


def _corridor(corridor: CorridorVerdict) -> list[str]:
    lines = [f"{corridor.corridor}: {corridor.verdict}"]
    if corridor.failing:
        lines.append("  failing: " + "; ".join(corridor.failing))
    headers = ["CHECK", "LIMIT", *(f"WINDOW {w.index}" for w in corridor.windows)]
    names = [c.name for c in corridor.windows[0].checks] if corridor.windows else []
    rows = []
    for i, name in enumerate(names):
        first = corridor.windows[0].checks[i]
        rows.append([name, _limit(first), *(_cell(w.checks[i]) for w in corridor.windows)])
    table = output.table(headers, rows)
    lines += ["  " + line for line in table.rstrip("\n").splitlines()]
    for w in corridor.windows:
        lines += [
            f"  window {w.index} {c.name}: {'-' if c.figure is None else c.figure} {c.unit}, "
            f"limit {_limit(c)} ({c.detail})"
            for c in w.checks
            if c.outcome == "fail"
        ]
    lines.append("")
    return lines


def _limit(check: Check) -> str:
    return f"{'>=' if check.bound == 'at_least' else '<='} {check.limit} {check.unit}"


def _cell(check: Check) -> str:
    if check.outcome == "not_measured":
        return "n/a"
    figure = "-" if check.figure is None else str(check.figure)
    return f"{figure} {_MARK[check.outcome]}"
