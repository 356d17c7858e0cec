"""Pilot figures from intent documents (``projections.intents``) and reconciliation items.

The one place the five pilot metrics are computed: ``corridor pilot report`` calls it per
corridor and window, and ``corridor demo``'s report (``projections.pilot_metrics``) folds the
log into the same documents and calls it once, so the two agree by construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Final

from schemas.pilot import BPS, PPM, TIERS, Figures, Latency, Ratio, ReconciliationFigures

# Value bands for fee rates, by amount in msat (upper bounds inclusive).
VALUE_BANDS_MSAT: Final[tuple[tuple[str, int | None], ...]] = (
    ("up_to_1k_sat", 1_000_000),
    ("1k_to_10k_sat", 10_000_000),
    ("10k_to_100k_sat", 100_000_000),
    ("above_100k_sat", None),
)


def band_of(amount_msat: int) -> str:
    for name, upper in VALUE_BANDS_MSAT:
        if upper is None or amount_msat <= upper:
            return name
    raise AssertionError("unreachable")


def nearest_rank(sorted_values: Sequence[int], pct: int) -> int | None:
    if not sorted_values:
        return None
    return sorted_values[max(0, -(-len(sorted_values) * pct // 100) - 1)]


def ratio(numerator: int, denominator: int) -> Ratio:
    assert numerator >= 0 and denominator >= 0
    bps = numerator * BPS // denominator if denominator else None
    return Ratio(numerator=numerator, denominator=denominator, bps=bps)


def operator_touched(doc: dict[str, Any]) -> bool:
    """An operator approved, rejected, resolved or acknowledged something of this intent."""
    return bool(doc["operator_actions"])


def figures(
    docs: Iterable[dict[str, Any]],
    items: Iterable[dict[str, Any]] = (),
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Figures:
    """Figures over ``docs`` (the caller chose them: one corridor, one window) and the
    reconciliation ``items`` resolved in ``[start_ms, end_ms)`` or open at ``end_ms`` (all of
    them, and no open age, without bounds)."""
    # Receives (ADR 0220) share the intents projection; the send figures are about sends.
    intents = [d for d in docs if d.get("kind") != "receive"]
    settled = [d for d in intents if d["state"] == "settled"]
    latencies = sorted(
        int(d["settled_at_ms"]) - int(d["received_at_ms"])
        for d in settled
        if d["settled_at_ms"] is not None
    )
    fee_by_band: dict[str, list[int]] = {name: [0, 0] for name, _ in VALUE_BANDS_MSAT}
    for d in settled:
        totals = fee_by_band[band_of(int(d["amount_msat"]))]
        totals[0] += int(d["fee_msat"] or 0)
        totals[1] += int(d["amount_msat"])
    failed_once = [d for d in intents if d["attempt_failures"] > 0]
    by_tier = {t: [d for d in intents if d["tier"] == t] for t in TIERS}
    reasons = Counter(str(d["failure_reason"]) for d in intents if d["failure_reason"] is not None)
    return Figures(
        intents=len(intents),
        by_state=dict(sorted(Counter(str(d["state"]) for d in intents).items())),
        settled=len(settled),
        settled_msat=sum(int(d["amount_msat"]) for d in settled),
        fees_msat=sum(int(d["fee_msat"] or 0) for d in settled),
        latency_ms=Latency(p50=nearest_rank(latencies, 50), p95=nearest_rank(latencies, 95)),
        fee_rate_ppm_by_band={
            name: (fee * PPM // amount if amount else None)
            for name, (fee, amount) in fee_by_band.items()
        },
        fees_msat_by_band={name: fee for name, (fee, _) in fee_by_band.items()},
        settled_msat_by_band={name: amount for name, (_, amount) in fee_by_band.items()},
        route_failures=ratio(
            sum(int(d["attempt_failures"]) for d in intents),
            sum(int(d["dispatches"]) for d in intents),
        ),
        auto_recovery=ratio(
            sum(1 for d in failed_once if d["state"] == "settled"), len(failed_once)
        ),
        intents_by_tier={t: len(tier_docs) for t, tier_docs in by_tier.items()},
        manual_intervention_by_tier={
            t: ratio(sum(1 for d in tier_docs if operator_touched(d)), len(tier_docs))
            for t, tier_docs in by_tier.items()
        },
        operator_approved=sum(1 for d in intents if d["approved"]),
        operator_rejected=sum(1 for d in intents if d["operator_rejected"]),
        failures_by_reason=dict(sorted(reasons.items())),
        anomalies=sum(len(d["anomalies"]) + len(d["acknowledged"]) for d in intents),
        reconciliation_time_ms=reconciliation_figures(items, start_ms=start_ms, end_ms=end_ms),
    )


def reconciliation_figures(
    items: Iterable[dict[str, Any]],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    age_at_ms: int | None = None,
) -> ReconciliationFigures:
    """Found to resolved over the items resolved in ``[start_ms, end_ms)``; the items found
    before ``end_ms`` and not resolved by then are open, and the oldest one's age at
    ``age_at_ms`` (default ``end_ms``) is given, so an item never resolved cannot flatter the
    figure."""
    age_at_ms = end_ms if age_at_ms is None else age_at_ms
    lo = start_ms if start_ms is not None else -(2**63)
    hi = end_ms if end_ms is not None else 2**63
    times: list[int] = []
    open_found: list[int] = []
    for item in items:
        if item.get("kind", "item") != "item" or int(item["found_at_ms"]) >= hi:
            continue
        found, resolved = int(item["found_at_ms"]), item["resolved_at_ms"]
        if resolved is not None and int(resolved) < hi:
            if int(resolved) >= lo:
                times.append(int(resolved) - found)
        else:
            open_found.append(found)
    times.sort()
    oldest = min(open_found, default=None)
    return ReconciliationFigures(
        resolved=len(times),
        p50=nearest_rank(times, 50),
        p95=nearest_rank(times, 95),
        max=times[-1] if times else None,
        open=len(open_found),
        oldest_open_age_ms=None if oldest is None or age_at_ms is None else age_at_ms - oldest,
    )
