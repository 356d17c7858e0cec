"""Work orders: a dispatched intent, as the executor receives it from JetStream.

The message body is a ``RecordedEvent`` whose ``data`` is an ``IntentDispatched`` payload
(published by ``services/relay/outbox.py``). Decoding is pure and refuses anything else.
"""

from __future__ import annotations

import msgspec

from schemas.events import IntentDispatched
from schemas.records import RecordedEvent
from services.executor.errors import BadWorkOrder

_record_decoder = msgspec.json.Decoder(RecordedEvent)


class WorkOrder(msgspec.Struct, frozen=True, kw_only=True):
    intent_id: str
    event_id: str  # the IntentDispatched event: causation of every outcome we report
    correlation_id: str
    dispatched: IntentDispatched

    @property
    def attempt(self) -> int:
        return self.dispatched.attempt

    @property
    def region(self) -> str:
        return self.dispatched.region

    @property
    def node(self) -> str:
        return self.dispatched.node


def decode_work_order(raw: bytes, *, bytes_max: int) -> WorkOrder:
    """Raises ``BadWorkOrder`` for an oversized, malformed or foreign message."""
    if len(raw) > bytes_max:
        raise BadWorkOrder(f"work order is {len(raw)} bytes, limit is {bytes_max}")
    try:
        record = _record_decoder.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise BadWorkOrder(f"not a recorded event: {exc}") from None
    if record.type != "IntentDispatched" or record.version != IntentDispatched.VERSION:
        raise BadWorkOrder(f"expected IntentDispatched v1, got {record.type} v{record.version}")
    try:
        dispatched = msgspec.convert(record.data, IntentDispatched)
    except msgspec.ValidationError as exc:
        raise BadWorkOrder(f"bad IntentDispatched payload: {exc}") from None
    if (dispatched.payment_request is None) == (dispatched.destination is None):
        raise BadWorkOrder("a work order needs exactly one of payment_request or destination")
    if dispatched.attempt < 1 or dispatched.pay_timeout_s < 1:
        raise BadWorkOrder("attempt and pay_timeout_s must be positive")
    return WorkOrder(
        intent_id=record.stream_id,
        event_id=record.event_id,
        correlation_id=record.metadata.correlation_id,
        dispatched=dispatched,
    )
