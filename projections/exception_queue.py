"""The operator's exception queue, read from the projection rows (ADR 0152): intents on the wire
too long or with an anomaly, judged against now, and open reconciliation items (ADR 0151).

One function for every window onto the queue (``corridor exceptions``, ``GET
/v1/exceptions``), so the CLI and the HTTP API cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from projections.intents import exception_of


def exception_queue(
    intent_docs: Iterable[dict[str, Any]],
    reconciliation_docs: Iterable[dict[str, Any]],
    *,
    now_ms: int,
    stuck_after_ms: int,
    liquidity_alerts: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The queue's rows, oldest first (ties by intent id). ``liquidity_alerts``: the breaches
    of the liquidity view (``projections.liquidity``, ADR 0241), live as of ``now_ms``."""
    rows = [
        row
        for doc in intent_docs
        for row in exception_of(doc, now_ms=now_ms, stuck_after_ms=stuck_after_ms)
    ]
    rows += [reconciliation_row(item) for item in reconciliation_docs if item["kind"] == "item"]
    rows += [liquidity_row(alert, now_ms=now_ms) for alert in liquidity_alerts]
    return sorted(rows, key=lambda row: (row["since_ms"], row["intent_id"]))


def reconciliation_row(item: dict[str, Any]) -> dict[str, Any]:
    """An open reconciliation item as an exception row."""
    evidence = " ".join(f"{k}={v}" for k, v in sorted(item["evidence"].items()) if v is not None)
    return {
        "intent_id": item["intent_id"] or "-",
        "kind": f"reconciliation:{item['category']}",
        "since_ms": item["found_at_ms"],
        "region": item["region"],
        "node": item["node"],
        "detail": f"hash {item['payment_hash'][:16]}.. {evidence}".strip(),
        "key": item["key"],
    }


def liquidity_row(alert: Mapping[str, Any], *, now_ms: int) -> dict[str, Any]:
    """A liquidity alert as an exception row: it stands while the breach does (no intent)."""
    peer = alert.get("peer")
    return {
        "intent_id": "-",
        "kind": f"liquidity:{alert['kind']}",
        "since_ms": now_ms,
        "region": alert["region"],
        "node": "-",
        "detail": alert["detail"],
        "key": f"liquidity:{alert['region']}:{peer or '-'}:{alert['kind']}",
    }
