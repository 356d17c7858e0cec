"""Receives in the intents projection and the pilot metrics (ADR 0220): a receive's document
follows its events to ``paid`` with its timeline, shows in the receive figures, and leaves the
send figures as they were."""

from __future__ import annotations

from typing import Any

import msgspec

from projections.catalog import INTENTS
from projections.intents import exception_of
from projections.pilot_metrics import PilotMetrics
from schemas.events import EventData
from services.domain.receive import decide
from tests.unit.test_receive_machine import CREATE, CTX, _report, _run


def _recorded(events: list[EventData], stream: str, first_position: int) -> list[dict[str, Any]]:
    return [
        {"type": type(e).__name__, "version": e.VERSION, "stream_id": stream,
         "stream_version": i + 1, "position": first_position + i,
         "recorded_at_ms": 1_700_000_000_000 + i * 1000, "event_id": f"{stream}-{i}",
         "data": msgspec.to_builtins(e)}
        for i, e in enumerate(events)
    ]  # fmt: skip


def _paid_receive_events() -> list[EventData]:
    events = decide(None, CREATE, CTX)
    state = _run(None, events)
    for report in (_report("issued"), _report("paid")):
        new = decide(state, report, CTX)
        state = _run(state, new)
        events += new
    return events


def test_a_paid_receive_is_a_document_with_its_timeline_and_no_exception() -> None:
    docs: dict[str, Any] = {}
    for event in _recorded(_paid_receive_events(), "rcv-1", 1):
        for key in INTENTS.keys(event):
            docs[key] = INTENTS.apply(docs.get(key), event)
    doc = docs["rcv-1"]
    assert doc["kind"] == "receive" and doc["state"] == "paid"
    assert doc["node"] == "us-lnd" and doc["amount_received_msat"] == 50_000
    assert [t["type"] for t in doc["timeline"]] == [
        "ReceiveRequested", "ReceiveDispatched", "InvoiceIssued", "InvoicePaid",
    ]  # fmt: skip
    assert exception_of(doc, now_ms=2_000_000_000_000, stuck_after_ms=1) == []
    assert INTENTS.columns(doc).caller_id == "alice"


def test_receive_figures_apart_from_the_send_figures() -> None:
    metrics = PilotMetrics()
    for event in _recorded(_paid_receive_events(), "rcv-1", 1):
        metrics.apply(event)
    report = metrics.report()
    assert report["intents"] == 0 and report["settled_msat"] == 0  # sends only
    assert report["receives"] == {
        "receives": 1, "by_state": {"paid": 1}, "paid": 1, "received_msat": 50_000,
        "paid_late": 0,
    }  # fmt: skip
