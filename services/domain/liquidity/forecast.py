"""How long a region's outbound lasts at its recent outflow (ADR 0241).

The outflow is what the region's nodes settled (amount plus fee) over a recent window, from the
same intent documents the pilot metrics fold (projections/pilot_metrics.py). Integers only:
msat per hour, and whole hours until dry (rounded down, so the alert comes early, not late).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

HOUR_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True)
class Outflow:
    region: str
    settled_msat: int
    window_ms: int

    @property
    def msat_per_hour(self) -> int:
        return self.settled_msat * HOUR_MS // self.window_ms if self.window_ms > 0 else 0


def outflows(
    intent_docs: Iterable[Mapping[str, Any]], *, now_ms: int, window_ms: int
) -> dict[str, Outflow]:
    """Per region: what settled from its nodes in ``(now_ms - window_ms, now_ms]``."""
    assert window_ms > 0
    since_ms = now_ms - window_ms
    settled: dict[str, int] = {}
    for doc in intent_docs:
        at_ms, region = doc.get("settled_at_ms"), doc.get("region")
        if at_ms is None or region is None or not since_ms < int(at_ms) <= now_ms:
            continue
        spent = int(doc["amount_msat"]) + int(doc.get("fee_msat") or 0)
        settled[region] = settled.get(region, 0) + spent
    return {r: Outflow(r, msat, window_ms) for r, msat in sorted(settled.items())}


def hours_until_dry(outbound_msat: int, outflow: Outflow | None) -> int | None:
    """Whole hours the outbound lasts at this outflow; None when nothing flows out."""
    if outflow is None or outflow.msat_per_hour <= 0:
        return None
    return max(0, outbound_msat) // outflow.msat_per_hour
