"""Reconciliation time, the fifth pilot metric: from a mismatch found to its resolution.

A pure fold over the reconciliation events (``ReconciliationMismatchFound`` and
``ReconciliationMismatchResolved``, ADR 0151), so it can be rebuilt by replay like the other
pilot metrics. Times are the events' own ``found_at_ms``/``resolved_at_ms`` (the engine's clock
at commit), so a replay gives the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.reconciliation_messages import (
    ReconciliationMismatchFound,
    ReconciliationMismatchResolved,
)

FOUND: Final = ReconciliationMismatchFound.__name__
RESOLVED: Final = ReconciliationMismatchResolved.__name__


@dataclass
class ReconciliationTimes:
    resolved_ms: list[int] = field(default_factory=list)  # found -> resolved, per item
    open_since_ms: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, key)

    def apply(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event["data"]
        if kind == FOUND:
            self.open_since_ms[(data["node"], data["key"])] = int(data["found_at_ms"])
        elif kind == RESOLVED:
            self.open_since_ms.pop((data["node"], data["key"]), None)
            self.resolved_ms.append(int(data["resolved_at_ms"]) - int(data["found_at_ms"]))

    def report(self, *, now_ms: int | None = None) -> dict[str, Any]:
        """``p50``/``p95``/``max`` over resolved items; ``open`` items and, given ``now_ms``,
        the age of the oldest (an item never resolved must not flatter the figure)."""
        times = sorted(self.resolved_ms)
        oldest = min(self.open_since_ms.values(), default=None)
        return {
            "resolved": len(times),
            "p50": _nearest_rank(times, 50),
            "p95": _nearest_rank(times, 95),
            "max": times[-1] if times else None,
            "open": len(self.open_since_ms),
            "oldest_open_age_ms": None if oldest is None or now_ms is None else now_ms - oldest,
        }


def reconciliation_time(
    events: Iterable[dict[str, Any]], *, now_ms: int | None = None
) -> dict[str, Any]:
    """The metric over recorded events (upcast, any streams, each in version order)."""
    times = ReconciliationTimes()
    for event in events:
        times.apply(event)
    return times.report(now_ms=now_ms)


def _nearest_rank(sorted_values: list[int], pct: int) -> int | None:
    if not sorted_values:
        return None
    return sorted_values[max(0, -(-len(sorted_values) * pct // 100) - 1)]
