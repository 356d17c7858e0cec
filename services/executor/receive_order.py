"""Receive work orders (ADR 0220): a ``ReceiveDispatched`` event as the executor receives it
from the dispatch stream, beside payments' ``IntentDispatched`` (``work_order.py``)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from schemas.receive_messages import ReceiveDispatched, is_receive_stream
from schemas.records import RecordedEvent
from services import tracing
from services.executor.errors import BadWorkOrder, WorkOrderTooNew


class _Head(msgspec.Struct):
    type: str


_head = msgspec.json.Decoder(_Head)
_record = msgspec.json.Decoder(RecordedEvent)


class ReceiveOrder(msgspec.Struct, frozen=True, kw_only=True):
    intent_id: str
    event_id: str
    correlation_id: str
    dispatched: ReceiveDispatched
    traceparent: str | None = None


def is_receive_order(raw: bytes) -> bool:
    """Whether a dispatch message is a receive order (cheap: the type field only)."""
    try:
        return _head.decode(raw).type == "ReceiveDispatched"
    except msgspec.DecodeError:
        return False


def decode_receive_order(
    raw: bytes, *, bytes_max: int, headers: Mapping[str, str] | None = None
) -> ReceiveOrder:
    if len(raw) > bytes_max:
        raise BadWorkOrder(f"work order is {len(raw)} bytes, limit is {bytes_max}")
    try:
        record = _record.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadWorkOrder(f"not a recorded event: {exc}") from None
    if record.version > ReceiveDispatched.VERSION:
        raise WorkOrderTooNew(f"ReceiveDispatched v{record.version} is newer than this executor")
    try:
        dispatched = msgspec.convert(record.data, ReceiveDispatched)
    except msgspec.ValidationError as exc:
        raise BadWorkOrder(f"bad ReceiveDispatched payload: {exc}") from None
    if not is_receive_stream(record.stream_id):
        raise BadWorkOrder(f"a receive order on stream {record.stream_id!r}")
    if dispatched.amount_msat <= 0 or dispatched.expiry_s <= 0:
        raise BadWorkOrder("amount_msat and expiry_s must be positive")
    return ReceiveOrder(
        intent_id=record.stream_id,
        event_id=record.event_id,
        correlation_id=record.metadata.correlation_id,
        dispatched=dispatched,
        traceparent=tracing.valid((headers or {}).get(tracing.TRACEPARENT))
        or record.metadata.traceparent,
    )
