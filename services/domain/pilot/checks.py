"""Thresholds held against one window's figures, and the go/no-go rule (ADR 0155).

Every comparison is exact integer arithmetic on what was counted. A ratio's figure is shown in
bp (a fee rate in ppm) rounded against the pilot, up for a maximum and down for a minimum, so
"figure <= limit" as printed says the same as the exact comparison.

A check with nothing to measure (no failed attempt to recover, no payment in a band) is
``not_measured`` and does not fail; too few intents fails ``min_intents`` instead, because
insufficient evidence is no-go, never go.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.pilot import (
    BPS,
    PPM,
    TIERS,
    Bound,
    Check,
    CorridorVerdict,
    Figures,
    Outcome,
    PilotThresholds,
    Ratio,
    WindowReport,
)
from services.domain.pilot.figures import VALUE_BANDS_MSAT


def checks(f: Figures, t: PilotThresholds) -> tuple[Check, ...]:
    out = [
        _at_least("min_intents", f.intents, t.min_intents, "intents",
                  "insufficient evidence" if f.intents < t.min_intents else "enough intents"),
        _latency(f, t),
        _ratio_max("route_failure_ratio", f.route_failures, t.route_failure_ratio_max_bps,
                   "dispatches failed or in doubt", "no dispatch"),
        _ratio_min("auto_recovery", f.auto_recovery, t.auto_recovery_min_bps,
                   "intents with a failed attempt settled", "no failed attempt to recover"),
    ]  # fmt: skip
    limits = t.manual_intervention_rate_max_bps
    for tier in TIERS:
        out.append(
            _ratio_max(f"manual_intervention.{tier}", f.manual_intervention_by_tier[tier],
                       getattr(limits, tier), f"{tier}-tier intents touched by an operator",
                       f"no {tier}-tier intent")
        )  # fmt: skip
    fee_limits = _fee_limits(t)
    for band, _ in VALUE_BANDS_MSAT:
        out.append(_fee_rate(band, f, fee_limits[band]))
    recon = f.reconciliation_time_ms
    if recon.p95 is None:
        out.append(_unmeasured("reconciliation_p95", t.reconciliation_p95_max_ms, "ms",
                               "no reconciliation item resolved"))  # fmt: skip
    else:
        out.append(_at_most("reconciliation_p95", recon.p95, t.reconciliation_p95_max_ms, "ms",
                            f"found to resolved, {recon.resolved} resolved"))  # fmt: skip
    age = "" if recon.oldest_open_age_ms is None else f", oldest {recon.oldest_open_age_ms} ms"
    out.append(_at_most("open_reconciliation_items", recon.open,
                        t.open_reconciliation_items_max, "items",
                        f"open at window end{age}"))  # fmt: skip
    return tuple(out)


def window_report(
    index: int, start_ms: int, end_ms: int, f: Figures, t: PilotThresholds
) -> WindowReport:
    found = checks(f, t)
    return WindowReport(
        index=index, start_ms=start_ms, end_ms=end_ms,
        passed=all(c.outcome != "fail" for c in found), figures=f, checks=found,
    )  # fmt: skip


def verdict(corridor: str, windows: Sequence[WindowReport]) -> CorridorVerdict:
    """``go`` only when there are windows and every one passes: one good week proves
    nothing."""
    failing = tuple(
        f"window {w.index}: {c.name}" for w in windows for c in w.checks if c.outcome == "fail"
    )
    go = bool(windows) and not failing
    return CorridorVerdict(
        corridor=corridor, verdict="go" if go else "no-go", failing=failing, windows=tuple(windows)
    )


def _latency(f: Figures, t: PilotThresholds) -> Check:
    p95 = f.latency_ms.p95
    if p95 is not None:
        return _at_most("latency_p95", p95, t.latency_p95_max_ms, "ms",
                        f"received to settled, {f.settled} settled")  # fmt: skip
    if f.intents == 0:
        return _unmeasured("latency_p95", t.latency_p95_max_ms, "ms", "no intents")
    # Intents came and none settled: that is evidence, and it is against the pilot.
    return Check(name="latency_p95", outcome="fail", figure=None, bound="at_most",
                 limit=t.latency_p95_max_ms, unit="ms",
                 detail=f"none of {f.intents} intents settled")  # fmt: skip


def _fee_rate(band: str, f: Figures, limit_ppm: int) -> Check:
    name = f"fee_rate.{band}"
    if f.fee_rate_ppm_by_band[band] is None:
        return _unmeasured(name, limit_ppm, "ppm", "nothing settled in this band")
    fee, amount = _band_totals(band, f)
    return _exact_max(name, fee, amount, PPM, limit_ppm, "ppm",
                      f"fees {fee} msat on {amount} msat settled")  # fmt: skip


def _band_totals(band: str, f: Figures) -> tuple[int, int]:
    # The shown rate is rounded down; the exact comparison needs what was summed.
    return f.fees_msat_by_band[band], f.settled_msat_by_band[band]


def _fee_limits(t: PilotThresholds) -> dict[str, int]:
    limits = t.fee_rate_max_ppm
    return {
        "up_to_1k_sat": limits.up_to_1k_sat,
        "1k_to_10k_sat": limits.k1_to_10k_sat,
        "10k_to_100k_sat": limits.k10_to_100k_sat,
        "above_100k_sat": limits.above_100k_sat,
    }


def _ratio_max(name: str, r: Ratio, limit_bps: int, what: str, nothing: str) -> Check:
    if r.denominator == 0:
        return _unmeasured(name, limit_bps, "bp", nothing)
    return _exact_max(name, r.numerator, r.denominator, BPS, limit_bps, "bp",
                      f"{r.numerator} of {r.denominator} {what}")  # fmt: skip


def _ratio_min(name: str, r: Ratio, limit_bps: int, what: str, nothing: str) -> Check:
    if r.denominator == 0:
        return _unmeasured(name, limit_bps, "bp", nothing, bound="at_least")
    figure = r.numerator * BPS // r.denominator  # down: against the pilot
    return _at_least(name, figure, limit_bps, "bp", f"{r.numerator} of {r.denominator} {what}")


def _exact_max(
    name: str, numerator: int, denominator: int, scale: int, limit: int, unit: str, detail: str
) -> Check:
    figure = -(-numerator * scale // denominator)  # up: against the pilot
    return _at_most(name, figure, limit, unit, detail)


def _at_most(name: str, figure: int, limit: int, unit: str, detail: str) -> Check:
    outcome: Outcome = "pass" if figure <= limit else "fail"
    return Check(name=name, outcome=outcome, figure=figure, bound="at_most", limit=limit,
                 unit=unit, detail=detail)  # fmt: skip


def _at_least(name: str, figure: int, limit: int, unit: str, detail: str) -> Check:
    outcome: Outcome = "pass" if figure >= limit else "fail"
    return Check(name=name, outcome=outcome, figure=figure, bound="at_least", limit=limit,
                 unit=unit, detail=detail)  # fmt: skip


def _unmeasured(name: str, limit: int, unit: str, detail: str, bound: Bound = "at_most") -> Check:
    return Check(name=name, outcome="not_measured", figure=None, bound=bound, limit=limit,
                 unit=unit, detail=detail)  # fmt: skip
