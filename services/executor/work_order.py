"""Work orders: a dispatched intent, as the executor receives it from JetStream.

The message body is a ``RecordedEvent`` whose ``data`` is an ``IntentDispatched`` payload
(published by ``services/relay/outbox.py``). Decoding is pure and refuses anything else. An
order of the previous signed version is upcast (``schemas/upcasting.py``); one newer than this
executor knows raises ``WorkOrderTooNew``, which the worker leaves for an upgraded executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from schemas.events import IntentDispatched
from schemas.records import RecordedEvent
from schemas.upcasting import upcast
from services import tracing
from services.executor.errors import BadWorkOrder, WorkOrderTooNew

# Work orders are signed from IntentDispatched v2 on (ADR 0063); an older one is never paid.
FIRST_SIGNED_ORDER_VERSION: Final = 2


def accepted_order_versions(current: int, *, first_signed: int) -> frozenset[int]:
    """The current version and the one before it, among signed versions only: what an
    executor takes during a rolling upgrade, when an engine one version behind or ahead of
    the executors may still be dispatching (ADR 0078)."""
    return frozenset(v for v in (current - 1, current) if v >= first_signed)


ACCEPTED_ORDER_VERSIONS: Final = accepted_order_versions(
    IntentDispatched.VERSION, first_signed=FIRST_SIGNED_ORDER_VERSION
)

_record_decoder = msgspec.json.Decoder(RecordedEvent)


class WorkOrder(msgspec.Struct, frozen=True, kw_only=True):
    intent_id: str
    event_id: str  # the IntentDispatched event: causation of every outcome we report
    correlation_id: str
    dispatched: IntentDispatched
    # The W3C trace context to continue (ADR 0154): the relay's header, else the event's.
    traceparent: str | None = None

    @property
    def attempt(self) -> int:
        return self.dispatched.attempt

    @property
    def region(self) -> str:
        return self.dispatched.region

    @property
    def node(self) -> str:
        return self.dispatched.node


def decode_work_order(
    raw: bytes, *, bytes_max: int, headers: Mapping[str, str] | None = None
) -> WorkOrder:
    """Raises ``BadWorkOrder`` for an oversized, malformed or foreign message."""
    if len(raw) > bytes_max:
        raise BadWorkOrder(f"work order is {len(raw)} bytes, limit is {bytes_max}")
    try:
        record = _record_decoder.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise BadWorkOrder(f"not a recorded event: {exc}") from None
    if record.type != "IntentDispatched":
        raise BadWorkOrder(f"expected IntentDispatched, got {record.type} v{record.version}")
    if record.version > IntentDispatched.VERSION:
        raise WorkOrderTooNew(
            f"IntentDispatched v{record.version} is newer than this executor knows "
            f"(v{IntentDispatched.VERSION}): left for an upgraded executor"
        )
    if record.version not in ACCEPTED_ORDER_VERSIONS:
        raise BadWorkOrder(
            f"IntentDispatched v{record.version} is not accepted: this executor takes signed "
            f"versions {', '.join(f'v{v}' for v in sorted(ACCEPTED_ORDER_VERSIONS))}"
        )
    try:
        dispatched = msgspec.convert(
            upcast("IntentDispatched", record.version, record.data), IntentDispatched
        )
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
        traceparent=tracing.valid((headers or {}).get(tracing.TRACEPARENT))
        or record.metadata.traceparent,
    )
