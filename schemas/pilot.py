"""The pilot report: figures per corridor and window, the thresholds they are held to, the
verdict (ADR 0155), and the thresholds file's format (ADR 0156).

Money is integer msat; rates of money are integer ppm; ratios of counts carry their numerator
and denominator and, for thresholds, integer basis points (1 bp = 0.01 %), so every check is an
exact integer comparison and the evidence shows what was counted.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

# A basis point is 1/10,000; a threshold on a ratio is at most the whole.
BPS: Final = 10_000
PPM: Final = 1_000_000
# Limits on times: nothing a pilot measures may take longer than 31 days (a payment or a
# reconciliation item open longer than that is a different conversation); more is a unit typo.
TIME_MS_MAX: Final = 31 * 24 * 3600 * 1000
# More intents than this in one window is a production, not a pilot; a larger minimum is a typo.
MIN_INTENTS_MAX: Final = 10_000_000
# An open-items allowance beyond this means "not checked": say so by leaving the pilot.
OPEN_ITEMS_MAX: Final = 10_000
THRESHOLDS_VERSION_MAX: Final = 1_000_000

Bps = Annotated[int, msgspec.Meta(ge=0, le=BPS)]
Ppm = Annotated[int, msgspec.Meta(ge=0, le=PPM)]
TimeMs = Annotated[int, msgspec.Meta(ge=0, le=TIME_MS_MAX)]
TierName = Literal["auto", "review", "approval"]
TIERS: Final[tuple[TierName, ...]] = ("auto", "review", "approval")
Verdict = Literal["go", "no-go"]
Outcome = Literal["pass", "fail", "not_measured"]
Bound = Literal["at_least", "at_most"]


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class FeeRateMaxPpm(_Strict, frozen=True, kw_only=True):
    """Per value band (``projections.pilot_metrics.VALUE_BANDS_MSAT``): the most fee, in ppm
    of the amount settled in the band, the pilot accepts."""

    up_to_1k_sat: Ppm
    k1_to_10k_sat: Ppm = msgspec.field(name="1k_to_10k_sat")
    k10_to_100k_sat: Ppm = msgspec.field(name="10k_to_100k_sat")
    above_100k_sat: Ppm


class InterventionRateMaxBps(_Strict, frozen=True, kw_only=True):
    """Per autonomy tier: the most intents an operator had to touch (approve, reject, resolve,
    acknowledge), in bp of the tier's intents. The approval tier is touched by design."""

    auto: Bps
    review: Bps
    approval: Bps


class PilotThresholds(_Strict, frozen=True, kw_only=True):
    """What a window must show for the pilot to go on (``config/pilot-thresholds/v1.toml``).

    ``version`` names this set of limits: a report says which version it judged against, and
    a changed limit is a new version, so an old "go" can be traced to the limits it met."""

    version: Annotated[int, msgspec.Meta(ge=1, le=THRESHOLDS_VERSION_MAX)]
    # Too few intents is insufficient evidence, which is no-go (ADR 0155).
    min_intents: Annotated[int, msgspec.Meta(ge=1, le=MIN_INTENTS_MAX)]
    latency_p95_max_ms: TimeMs
    route_failure_ratio_max_bps: Bps
    auto_recovery_min_bps: Bps
    reconciliation_p95_max_ms: TimeMs
    open_reconciliation_items_max: Annotated[int, msgspec.Meta(ge=0, le=OPEN_ITEMS_MAX)]
    manual_intervention_rate_max_bps: InterventionRateMaxBps
    fee_rate_max_ppm: FeeRateMaxPpm


class Ratio(msgspec.Struct, frozen=True, kw_only=True):
    """``numerator`` of ``denominator`` counted; ``bps`` rounded down, None when nothing was
    counted."""

    numerator: int
    denominator: int
    bps: int | None


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    """Received to settled, nearest-rank percentiles over settled intents."""

    p50: int | None
    p95: int | None


class ReconciliationFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Found to resolved per reconciliation item (ADR 0151): percentiles over the items
    resolved in the window; ``open`` at the window's end and the oldest one's age then."""

    resolved: int
    p50: int | None
    p95: int | None
    max: int | None
    open: int
    oldest_open_age_ms: int | None


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """One corridor's (or all corridors') figures over intents received in one window."""

    intents: int
    by_state: dict[str, int]
    settled: int
    settled_msat: int
    fees_msat: int
    latency_ms: Latency
    fee_rate_ppm_by_band: dict[str, int | None]
    fees_msat_by_band: dict[str, int]
    settled_msat_by_band: dict[str, int]
    route_failures: Ratio
    auto_recovery: Ratio
    intents_by_tier: dict[str, int]
    manual_intervention_by_tier: dict[str, Ratio]
    operator_approved: int
    operator_rejected: int
    failures_by_reason: dict[str, int]
    anomalies: int
    reconciliation_time_ms: ReconciliationFigures


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One threshold held against one figure: the evidence is the figure and the limit.
    ``bound`` says whether the figure must be at least or at most the limit."""

    name: str
    outcome: Outcome
    figure: int | None
    bound: Bound
    limit: int
    unit: str
    detail: str


class WindowReport(msgspec.Struct, frozen=True, kw_only=True):
    """Intents received in ``[start_ms, end_ms)``: their figures and every check."""

    index: int
    start_ms: int
    end_ms: int
    passed: bool
    figures: Figures
    checks: tuple[Check, ...]


class CorridorVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """``go`` only when every window passes every check; ``failing`` names each failed
    check as ``window <index>: <check>``."""

    corridor: str
    verdict: Verdict
    failing: tuple[str, ...]
    windows: tuple[WindowReport, ...]


class PilotReport(msgspec.Struct, frozen=True, kw_only=True):
    """``corridor pilot report --json``: windows oldest first, the last one ending at
    ``now_ms``; ``all_corridors`` are the figures of every corridor together, per window
    (what ``corridor demo`` reports), given for comparison and judged by no threshold."""

    now_ms: int
    window: str
    window_ms: int
    windows: int
    thresholds_version: int
    thresholds_source: str
    verdict: Verdict
    corridors: tuple[CorridorVerdict, ...]
    all_corridors: tuple[Figures, ...]
    version: Literal[1] = 1
