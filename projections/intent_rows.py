"""The row shape every kind in the intents projection shares (payments; receives, ADR 0220):
who asked, what, where it is, and the fields ``exception_of``, ``corridor audit timeline`` and
``corridor get``'s summary read, so they take a row of any kind as it is. And the two steps
every event takes on a row: its state, time and position, then one timeline entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

Doc = dict[str, Any]
# Timeline text is for people; bounded so one long reason cannot bloat a row.
WHAT_CHARS_MAX: Final = 300


def new_row(event: dict[str, Any], **kind_fields: Any) -> Doc:
    """The row of a stream's first event: the shared fields from it, then the kind's own
    (``state`` at least), which may also override a shared one."""
    data = event["data"]
    caller = data.get("caller") or {}
    return {
        "intent_id": event["stream_id"],
        "caller_id": caller.get("id"),
        "caller_kind": caller.get("kind"),
        "on_behalf_of": data.get("on_behalf_of"),
        "agent_key_id": data.get("agent_key_id"),
        "corridor": data.get("corridor"),
        "amount_msat": int(data["amount_msat"]),
        "received_at_ms": int(data.get("received_at_ms") or event["recorded_at_ms"]),
        "idempotency_key": data.get("idempotency_key"),
        "payment_hash": None,
        "updated_at_ms": int(event["recorded_at_ms"]),
        "position": event.get("position"),
        "tier": None,
        "policy_version": None,
        "explanation": [],
        "routes": [],
        "dispatches": 0,
        "attempts": [],
        "attempt_failures": 0,
        "settled_at_ms": None,
        "fee_msat": None,
        "failure_reason": None,
        "approved": False,
        "operator_rejected": False,
        "operator_actions": [],
        "on_wire_since_ms": None,
        "region": None,
        "node": None,
        "doubt_reason": None,
        "unproven": False,
        "escalated": None,
        "anomalies": [],
        "acknowledged": [],
        "timeline": [],
        **kind_fields,
    }


def advance(doc: Doc, event: dict[str, Any], status_after: Mapping[str, object]) -> None:
    """The row's state after ``event`` (by the kind's transition table), its time and the
    log position of its newest event."""
    if event["type"] in status_after:
        doc["state"] = str(status_after[event["type"]])
    doc["updated_at_ms"] = int(event["recorded_at_ms"])
    doc["position"] = event.get("position")


def add_to_timeline(doc: Doc, event: dict[str, Any], what: str) -> None:
    doc["timeline"] = [
        *doc["timeline"],
        {"position": event.get("position"), "at_ms": int(event["recorded_at_ms"]),
         "type": event["type"], "what": what[:WHAT_CHARS_MAX]},
    ]  # fmt: skip
