"""Our attempts on one node, folded from the log's records (pure).

Each record is the log's event as a mapping (``type``, ``stream_id``, ``data``,
``recorded_at_ms``, ``position``), already upcast. An attempt is known from its
``IntentDispatched``; its outcome events name it by ``attempt``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from services.domain.reconciliation.compare import OurAttempt

# The events that make or move an attempt: what the worker reads from the log.
ATTEMPT_EVENTS: Final = frozenset(
    {"IntentDispatched", "PaymentSucceeded", "PaymentAttemptFailed", "IntentResolved"}
)


@dataclass(frozen=True, slots=True)
class Folded:
    attempt: OurAttempt
    last_position: int  # the position of the newest event that touched it


def fold_attempts(records: Iterable[Mapping[str, Any]], *, node: str) -> list[Folded]:
    """Every attempt dispatched to ``node`` in ``records``, as our log last described it."""
    held: dict[tuple[str, int], Folded] = {}
    for record in records:
        kind, data = record["type"], record["data"]
        key = (str(record["stream_id"]), int(data.get("attempt", 0)))
        position = int(record.get("position", 0))
        if kind == "IntentDispatched":
            if data.get("node") != node or not data.get("payment_hash"):
                continue
            attempt = OurAttempt(
                intent_id=key[0],
                attempt=key[1],
                payment_hash=str(data["payment_hash"]),
                amount_msat=int(data["amount_msat"]),
                status="in_flight",
                dispatched_at_ms=int(record["recorded_at_ms"]),
            )
            held[key] = Folded(attempt, position)
            continue
        known = held.get(key)
        if known is None:
            continue
        moved = _moved(known.attempt, kind, data)
        if moved is not None:
            held[key] = Folded(moved, position)
    return list(held.values())


def _moved(attempt: OurAttempt, kind: str, data: Mapping[str, Any]) -> OurAttempt | None:
    if kind == "PaymentSucceeded":
        return replace(attempt, status="succeeded", fee_msat=int(data["fee_msat"]))
    if kind == "PaymentAttemptFailed":
        return replace(attempt, status="failed")
    if kind == "IntentResolved":
        # An operator's verdict from the node's evidence (ADR 0076) is our log's word.
        settled = data.get("resolution") == "settled"
        return replace(attempt, status="succeeded" if settled else "failed")
    return None
