"""The projections the runner keeps in PostgreSQL, each a pure fold over one key's events.

A ``Projection`` says which documents an event touches (``keys``), how one document changes
(``apply``) and which columns readers filter on (``columns``). Its ``version`` names the fold:
when a fold changes, bump it, and the runner rebuilds the projection from the log before it
serves (``projections/runner.py``, ADR 0152).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from projections import intents
from schemas.events import PaymentIntentEvent
from schemas.receive_messages import RECEIVE_EVENT_TYPES
from schemas.reconciliation_messages import RECONCILIATION_EVENT_TYPES

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Columns:
    sort_ms: int
    caller_id: str | None = None
    corridor: str | None = None
    open: bool = False


@dataclass(frozen=True, slots=True)
class Projection:
    name: str
    version: int
    keys: Callable[[dict[str, Any]], tuple[str, ...]]
    apply: Callable[[Doc | None, dict[str, Any]], Doc | None]
    columns: Callable[[Doc], Columns]


# An intent's stream holds these types only; the exception action of issue 15 adds one.
INTENT_EVENT_TYPES: Final = frozenset(
    {cls.__name__ for cls in typing.get_args(PaymentIntentEvent)}
    | {"AnomalyAcknowledged"}
    | set(RECEIVE_EVENT_TYPES)  # receives (ADR 0220), folded by projections/receives.py
)


def _intent_keys(event: dict[str, Any]) -> tuple[str, ...]:
    return (event["stream_id"],) if event["type"] in INTENT_EVENT_TYPES else ()


def _intent_columns(doc: Doc) -> Columns:
    return Columns(
        sort_ms=int(doc["received_at_ms"]),
        caller_id=doc["caller_id"],
        corridor=doc["corridor"],
        # A candidate for the exception queue: on the wire (it may be stuck) or an anomaly.
        open=doc["on_wire_since_ms"] is not None or bool(doc["anomalies"]),
    )


INTENTS: Final = Projection(
    name="intents", version=2, keys=_intent_keys, apply=intents.apply, columns=_intent_columns
)


def _reconciliation_keys(event: dict[str, Any]) -> tuple[str, ...]:
    kind, data = event["type"], event["data"]
    if kind not in RECONCILIATION_EVENT_TYPES:
        return ()
    if kind.startswith("NodeBreaker"):
        return (f"breaker:{data['node']}",)
    return (f"item:{data['node']}:{data['key']}",)


def _reconciliation_apply(doc: Doc | None, event: dict[str, Any]) -> Doc | None:
    """An item from found to resolved, or a node's breaker from tripped to cleared; kept after
    it closes, because reconciliation time (the fifth pilot metric) is measured on closed
    items."""
    kind, data = event["type"], event["data"]
    if kind == "ReconciliationMismatchFound":
        return {
            "kind": "item", "node": data["node"], "region": data["region"], "key": data["key"],
            "category": data["category"], "payment_hash": data["payment_hash"],
            "intent_id": data.get("intent_id"), "attempt": data.get("attempt"),
            "found_at_ms": int(data["found_at_ms"]), "evidence": data.get("evidence") or {},
            "resolved_at_ms": None, "resolved_by": None, "reason": None,
        }  # fmt: skip
    if kind == "NodeBreakerTripped":
        return {
            "kind": "breaker", "node": data["node"], "region": data["region"],
            "key": data["key"], "tripped_at_ms": int(data["tripped_at_ms"]),
            "cleared_at_ms": None, "cleared_by": None, "reason": None,
        }  # fmt: skip
    if doc is None:
        return None  # closing something whose opening is outside what was folded
    if kind == "ReconciliationMismatchResolved":
        return {**doc, "resolved_at_ms": int(data["resolved_at_ms"]),
                "resolved_by": data.get("operator_id") or data.get("by"),
                "reason": data.get("reason")}  # fmt: skip
    if kind == "NodeBreakerCleared":
        return {**doc, "cleared_at_ms": int(data["cleared_at_ms"]),
                "cleared_by": data.get("operator_id"), "reason": data.get("reason")}  # fmt: skip
    return doc


def _reconciliation_columns(doc: Doc) -> Columns:
    if doc["kind"] == "breaker":
        return Columns(sort_ms=doc["tripped_at_ms"], open=doc["cleared_at_ms"] is None)
    return Columns(sort_ms=doc["found_at_ms"], open=doc["resolved_at_ms"] is None)


RECONCILIATION: Final = Projection(
    name="reconciliation",
    version=1,
    keys=_reconciliation_keys,
    apply=_reconciliation_apply,
    columns=_reconciliation_columns,
)

ALL: Final = (INTENTS, RECONCILIATION)
BY_NAME: Final = {p.name: p for p in ALL}
