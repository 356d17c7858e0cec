"""The operator exception queue: intents a person must look at, folded from the log.

- ``in_doubt``: the node could not prove the outcome (``PaymentInDoubt``), or the payment has
  been on the wire (dispatched or in flight) longer than ``stuck_after_ms``. Such a payment is
  never re-sent elsewhere; an operator resolves it with the node's evidence.
- ``unproven_success``: ``PaymentSucceeded`` without a preimage matching the payment hash.
- ``escalated``: the engine's sweeper found the attempt past its life bound (``IntentEscalated``,
  ADR 0076); its spend stays reserved until the node's proof or ``corridor resolve``.
- ``anomaly``: an outcome that contradicted a final state (``OutcomeIgnored`` with anomaly),
  e.g. a success after a cancel: money may have moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.upcasting import upcast_record
from services.domain.intent.transitions import OFF_THE_WIRE_EVENTS, STATUS_AFTER


@dataclass
class _Open:
    state: str
    since_ms: int
    region: str | None = None
    node: str | None = None
    doubt_reason: str | None = None
    unproven: bool = False
    escalated: str | None = None  # the detail of the newest IntentEscalated


def build(
    events: Iterable[dict[str, Any]], *, now_ms: int, stuck_after_ms: int
) -> list[dict[str, Any]]:
    open_: dict[str, _Open] = {}
    anomalies: list[dict[str, Any]] = []
    for recorded in events:
        event = upcast_record(recorded)  # any stored version, read in today's shape
        kind, stream, data = event["type"], event["stream_id"], event["data"]
        at_ms = int(event["recorded_at_ms"])
        if kind == "IntentDispatched":
            open_[stream] = _Open(
                state=str(STATUS_AFTER[kind]), since_ms=at_ms, region=data.get("region"),
                node=data.get("node"),
            )  # fmt: skip
        elif kind == "PaymentInFlightReported" and stream in open_:
            open_[stream].state = str(STATUS_AFTER[kind])
        elif kind == "PaymentInDoubt" and stream in open_:
            open_[stream].doubt_reason = str(data.get("reason"))
        elif kind == "IntentEscalated" and stream in open_:
            open_[stream].escalated = (
                f"{data.get('state')} past its life bound of {data.get('life_s')} s "
                f"({data.get('reason')})"
            )
        elif kind == "PaymentSucceeded" and stream in open_:
            open_[stream].state, open_[stream].unproven = str(STATUS_AFTER[kind]), True
        elif kind in OFF_THE_WIRE_EVENTS:  # it ended, or was routed anew after a proven failure
            open_.pop(stream, None)
        elif kind == "AnomalyAcknowledged":  # an operator's word closes the open ones
            anomalies = [a for a in anomalies if a["intent_id"] != stream]
        elif kind == "OutcomeIgnored" and data.get("anomaly"):
            anomalies.append({"intent_id": stream, "kind": "anomaly", "since_ms": at_ms,
                              "detail": f"{data.get('outcome')} while {data.get('state')}: "
                                        f"{data.get('reason')}"})  # fmt: skip
    queue = list(anomalies)
    for intent_id, item in open_.items():
        if item.unproven:
            kind, detail = "unproven_success", "succeeded without a matching preimage"
        elif item.escalated is not None:
            kind, detail = "escalated", item.escalated
        elif item.doubt_reason is not None:
            kind, detail = "in_doubt", f"node could not prove the outcome ({item.doubt_reason})"
        elif now_ms - item.since_ms >= stuck_after_ms:
            kind, detail = "in_doubt", f"{item.state} for {(now_ms - item.since_ms) // 1000} s"
        else:
            continue
        queue.append({"intent_id": intent_id, "kind": kind, "since_ms": item.since_ms,
                      "region": item.region, "node": item.node, "detail": detail})  # fmt: skip
    return sorted(queue, key=lambda row: (row["since_ms"], row["intent_id"]))
