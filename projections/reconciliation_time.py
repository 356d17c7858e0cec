"""Reconciliation time, the fifth pilot metric: from a mismatch found to its resolution.

The log is folded into one document per reconciliation item by the projection runner's own
fold (``projections.catalog``), and the figures come from ``services.domain.pilot.figures``,
the code ``corridor pilot report`` uses. Times are the events' own ``found_at_ms`` and
``resolved_at_ms`` (the engine's clock at commit), so a replay gives the same figures (ADR
0151).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from projections.catalog import RECONCILIATION
from projections.runner import fold
from services.domain.pilot.figures import reconciliation_figures


def reconciliation_items(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reconciliation items and breakers (``kind`` says which) folded from upcast events, with
    the projection runner's own fold, so they are the documents it stores."""
    docs: dict[str, dict[str, Any] | None] = {}
    fold(RECONCILIATION, docs, events)
    return [doc for doc in docs.values() if doc is not None]


def reconciliation_time(
    events: Iterable[dict[str, Any]], *, now_ms: int | None = None
) -> dict[str, Any]:
    """The metric over recorded events (upcast, any streams, each in version order):
    ``p50``/``p95``/``max`` over resolved items; ``open`` items and, given ``now_ms``, the age
    of the oldest (an item never resolved must not flatter the figure)."""
    figures = reconciliation_figures(reconciliation_items(events), age_at_ms=now_ms)
    return msgspec.to_builtins(figures)  # type: ignore[no-any-return]
