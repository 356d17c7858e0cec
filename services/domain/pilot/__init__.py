"""Pilot metrics per corridor and window, thresholds, and the go/no-go rule (ADR 0155).

Pure: intent documents and reconciliation items in, figures and verdicts out; the clock (the
report's ``now_ms``) arrives from the caller.
"""

from services.domain.pilot.checks import checks, verdict, window_report
from services.domain.pilot.figures import VALUE_BANDS_MSAT, band_of, figures
from services.domain.pilot.report import UnknownCorridor, build_report
from services.domain.pilot.window import (
    WINDOWS_DEFAULT,
    WINDOWS_MAX,
    InvalidWindow,
    check_windows,
    consecutive,
    parse_window,
)

__all__ = [
    "VALUE_BANDS_MSAT",
    "WINDOWS_DEFAULT",
    "WINDOWS_MAX",
    "InvalidWindow",
    "UnknownCorridor",
    "band_of",
    "build_report",
    "check_windows",
    "checks",
    "consecutive",
    "figures",
    "parse_window",
    "verdict",
    "window_report",
]
