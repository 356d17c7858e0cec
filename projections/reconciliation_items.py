"""Open reconciliation items and tripped breakers, folded from the log (ADR 0151).

What ``corridor recon list`` and ``corridor exceptions`` show: a pure fold over recorded
events (upcast), so it can be rebuilt by replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from schemas.reconciliation_messages import RECONCILIATION_EVENT_TYPES


def build(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``{"items": [open items, oldest first], "breakers": [tripped nodes]}``."""
    items: dict[tuple[str, str], dict[str, Any]] = {}
    breakers: dict[str, dict[str, Any]] = {}
    for event in events:
        kind, data = event["type"], event["data"]
        if kind not in RECONCILIATION_EVENT_TYPES:
            continue
        node = data["node"]
        if kind == "ReconciliationMismatchFound":
            items[(node, data["key"])] = {
                "node": node, "region": data["region"], "key": data["key"],
                "category": data["category"], "payment_hash": data["payment_hash"],
                "intent_id": data.get("intent_id"), "attempt": data.get("attempt"),
                "since_ms": data["found_at_ms"], "evidence": data.get("evidence", {}),
            }  # fmt: skip
        elif kind == "ReconciliationMismatchResolved":
            items.pop((node, data["key"]), None)
        elif kind == "NodeBreakerTripped":
            breakers[node] = {"node": node, "region": data["region"], "key": data["key"],
                              "since_ms": data["tripped_at_ms"]}  # fmt: skip
        elif kind == "NodeBreakerCleared":
            breakers.pop(node, None)
    return {
        "items": sorted(items.values(), key=lambda i: (i["since_ms"], i["node"], i["key"])),
        "breakers": sorted(breakers.values(), key=lambda b: b["node"]),
    }


def exception_rows(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open items in the shape of ``projections.exceptions`` rows."""
    return [
        {
            "intent_id": item["intent_id"] or "-",
            "kind": f"reconciliation:{item['category']}",
            "since_ms": item["since_ms"],
            "region": item["region"],
            "node": item["node"],
            "detail": _detail(item),
        }
        for item in build(events)["items"]
    ]


def _detail(item: dict[str, Any]) -> str:
    evidence = " ".join(f"{k}={v}" for k, v in sorted(item["evidence"].items()) if v is not None)
    return f"hash {item['payment_hash'][:16]}.. {evidence}".strip()
