"""Reconciliation time, the fifth pilot metric: from a mismatch found to its resolution.

The log is folded into one document per reconciliation item (``node``, ``key``,
``found_at_ms``, ``resolved_at_ms``: the shape the projection runner keeps), and the figures
come from ``services.domain.pilot.figures``, the code ``corridor pilot report`` uses. Times are
the events' own ``found_at_ms``/``resolved_at_ms`` (the engine's clock at commit), so a replay
gives the same figures (ADR 0151).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from schemas.reconciliation_messages import (
    ReconciliationMismatchFound,
    ReconciliationMismatchResolved,
)
from services.domain.pilot.figures import reconciliation_figures

FOUND: Final = ReconciliationMismatchFound.__name__
RESOLVED: Final = ReconciliationMismatchResolved.__name__


def apply_item(items: dict[tuple[str, str], dict[str, Any]], event: dict[str, Any]) -> None:
    """One reconciliation event into ``items`` (by node and key); other events are ignored."""
    kind, data = event["type"], event["data"]
    if kind == FOUND:
        items[(data["node"], data["key"])] = {
            "kind": "item", "node": data["node"], "region": data.get("region"),
            "key": data["key"], "category": data.get("category"),
            "intent_id": data.get("intent_id"), "found_at_ms": int(data["found_at_ms"]),
            "resolved_at_ms": None,
        }  # fmt: skip
    elif kind == RESOLVED:
        item = items.get((data["node"], data["key"]))
        if item is not None:  # a resolution whose finding is outside what was folded
            items[(data["node"], data["key"])] = {
                **item,
                "resolved_at_ms": int(data["resolved_at_ms"]),
            }


def reconciliation_items(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        apply_item(items, event)
    return list(items.values())


def reconciliation_time(
    events: Iterable[dict[str, Any]], *, now_ms: int | None = None
) -> dict[str, Any]:
    """The metric over recorded events (upcast, any streams, each in version order):
    ``p50``/``p95``/``max`` over resolved items; ``open`` items and, given ``now_ms``, the age
    of the oldest (an item never resolved must not flatter the figure)."""
    figures = reconciliation_figures(reconciliation_items(events), age_at_ms=now_ms)
    return msgspec.to_builtins(figures)  # type: ignore[no-any-return]
