"""Pilot metrics fold: counts, latency percentiles, fee rates by band, recovery."""

from __future__ import annotations

from projections.pilot_metrics import band_of, build
from tests import pilot_stories
from tests.pilot_stories import Story, recon_events


def test_report() -> None:
    # Each history in the shape the engine writes (the fold reads the events' real fields).
    events = pilot_stories.events([
        Story("a", amount_msat=500_000, received_at_ms=1000).dispatched(1050).settled(1100, 50),
        Story("b", amount_msat=5_000_000, received_at_ms=1000, tier="review")
        .dispatched(1010).attempt_failed(1020).dispatched(1030).settled(1300, 1000),
        Story("c", amount_msat=50_000_000, received_at_ms=1000, tier="approval")
        .approval_requested(1000).rejected_by_operator(1200),
        Story("d", amount_msat=7, received_at_ms=1000).dispatched(1010).in_doubt(1020),
    ])  # fmt: skip
    report = build(events)
    assert report["intents"] == 4
    assert report["by_state"] == {"in_flight": 1, "rejected": 1, "settled": 2}
    assert report["latency_ms"] == {"p50": 100, "p95": 300}
    assert report["fee_rate_ppm_by_band"]["up_to_1k_sat"] == 100
    assert report["fee_rate_ppm_by_band"]["1k_to_10k_sat"] == 200
    assert report["fee_rate_ppm_by_band"]["above_100k_sat"] is None
    assert report["route_failure_ratio"] == round(2 / 4, 4)
    assert report["auto_recovery_rate"] == 0.5
    assert report["interventions_by_tier"] == {
        "auto": 2, "review": 1, "approval": 1, "operator_approved": 0, "operator_rejected": 1,
    }  # fmt: skip


def test_bands_are_inclusive_upper_bounds() -> None:
    assert band_of(1_000_000) == "up_to_1k_sat"
    assert band_of(1_000_001) == "1k_to_10k_sat"
    assert band_of(10**12) == "above_100k_sat"


def test_reconciliation_time_from_found_to_resolved() -> None:
    from projections.reconciliation_time import reconciliation_time

    events = [
        *recon_events("us-lnd", "a", found_at_ms=1_000, resolved_at_ms=61_000),
        *recon_events("us-lnd", "b", found_at_ms=2_000, resolved_at_ms=7_000),
        *recon_events("us-lnd", "c", found_at_ms=3_000),
    ]
    figures = reconciliation_time(events, now_ms=10_000)
    assert figures == {"resolved": 2, "p50": 5_000, "p95": 60_000, "max": 60_000, "open": 1,
                       "oldest_open_age_ms": 7_000}  # fmt: skip
    assert build(events)["reconciliation_time_ms"]["p95"] == 60_000
