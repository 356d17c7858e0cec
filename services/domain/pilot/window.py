"""Report windows: ``7d`` or ``36h``, and the consecutive windows that end at a given time."""

from __future__ import annotations

import re
from typing import Final

from schemas.errors import CorridorError

HOUR_MS: Final = 3600 * 1000
DAY_MS: Final = 24 * HOUR_MS
# Below an hour a window holds too few payments to say anything about a corridor.
WINDOW_MS_MIN: Final = HOUR_MS
# A quarter: the projection keeps every intent, but a report reads a window's documents into
# memory, and a pilot longer than a quarter is a production.
WINDOW_MS_MAX: Final = 90 * DAY_MS
# One good week proves nothing (ADR 0155), so at least two by default; more than twelve
# consecutive windows is a trend chart, not a go/no-go.
WINDOWS_DEFAULT: Final = 2
WINDOWS_MAX: Final = 12
WINDOW_CHARS_MAX: Final = 8
_WINDOW: Final = re.compile(r"([0-9]{1,5})([hd])")
_UNIT_MS: Final = {"h": HOUR_MS, "d": DAY_MS}


class InvalidWindow(CorridorError):
    """A window or a window count outside what the report accepts; ``field`` says which."""

    code = "invalid_window"


def parse_window(text: str) -> int:
    """``7d`` -> ms. A number of hours (``h``) or days (``d``), from 1 h to 90 d."""
    match = _WINDOW.fullmatch(text) if len(text) <= WINDOW_CHARS_MAX else None
    if match is None:
        raise InvalidWindow(
            f"{text[:WINDOW_CHARS_MAX]!r} is not a window: a number of hours or days, "
            "e.g. 36h or 7d",
            field="window",
        )
    window_ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if not WINDOW_MS_MIN <= window_ms <= WINDOW_MS_MAX:
        raise InvalidWindow(f"{text} is outside 1h..90d", field="window")
    return window_ms


def check_windows(count: int) -> int:
    if not 1 <= count <= WINDOWS_MAX:
        raise InvalidWindow(
            f"{count} windows: between 1 and {WINDOWS_MAX}", field="windows", limit=WINDOWS_MAX
        )
    return count


def consecutive(*, end_ms: int, window_ms: int, count: int) -> list[tuple[int, int]]:
    """``count`` back-to-back ``[start, end)`` windows, oldest first, the last ending at
    ``end_ms``."""
    assert window_ms > 0 and count >= 1
    return [
        (end_ms - (count - k) * window_ms, end_ms - (count - k - 1) * window_ms)
        for k in range(count)
    ]
