"""One event as the relay publishes it: its headers and body, built from the log's row or
from the writer's handoff (byte for byte the same), and what JetStream acknowledged."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from schemas.channel_messages import CHANNEL_OP_EVENT_TYPES, CHANNEL_ORDER_EVENTS
from schemas.codec import encode
from schemas.events import EVENT_TYPES
from schemas.jit_messages import JIT_EVENT_TYPES, JIT_ORDER_EVENTS
from schemas.payee_messages import PAYEE_EVENT_TYPES
from schemas.rebalance_messages import REBALANCE_EVENT_TYPES
from schemas.receive_messages import RECEIVE_EVENT_TYPES
from schemas.records import EventMetadata, RecordedEvent
from services import tracing
from services.bus import subjects
from services.engine.event_codec import CHECKPOINT_EVENT, owner_of, to_recorded
from services.eventstore.port import NewEvent, StoredEvent

# Events that are also work orders on the dispatch stream: payments', receives' (ADR 0220),
# channel operations' (ADR 0234), rebalances' (ADR 0244), JIT sales' (ADR 0261) and LSP
# orders' (ADR 0252).
ORDER_EVENT_TYPES = frozenset(
    {
        "IntentDispatched", "ReceiveDispatched", "RebalanceDispatched", "LspOrderRequested",
        *CHANNEL_ORDER_EVENTS, *JIT_ORDER_EVENTS,
    }
)  # fmt: skip
# How long a publish's acknowledgements may take before the batch counts as failed.
PUBLISH_ACK_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event ready to publish: its headers' values and its message body."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    correlation_id: str
    body: bytes
    hash: bytes
    order_subject: str | None  # set for IntentDispatched: the work order's subject
    owner: str | None  # the intent's caller, the event subject's token (ADR 0067)
    # The relay's span for a traced event, a child of the deciding span (ADR 0154).
    traceparent: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            subjects.HDR_MSG_ID: self.event_id,
            subjects.HDR_STREAM_ID: self.stream_id,
            subjects.HDR_POSITION: str(self.position),
            subjects.HDR_STREAM_VERSION: str(self.stream_version),
            subjects.HDR_EVENT_TYPE: self.type,
            subjects.HDR_CORRELATION_ID: self.correlation_id,
        }
        if self.traceparent is not None:
            headers[tracing.TRACEPARENT] = self.traceparent
        return headers

    @classmethod
    def stored(cls, event: StoredEvent) -> Outgoing:
        order = None
        if event.type in ORDER_EVENT_TYPES:
            order = subjects.dispatch_subject(
                str(event.payload["region"]), str(event.payload["node"])
            )
        return cls(
            position=event.position, event_id=event.event_id, stream_id=event.stream_id,
            stream_version=event.stream_version, type=event.type,
            correlation_id=str(event.metadata.get("correlation_id", "")),
            body=encode(to_recorded(event)), hash=event.hash, order_subject=order,
            owner=owner_of(event),
            traceparent=_relay_span(event.metadata.get("traceparent"), event.type),
        )  # fmt: skip

    @classmethod
    def handed_over(
        cls, position: int, event: NewEvent, prev_hash: bytes, event_hash: bytes
    ) -> Outgoing:
        metadata = _decode_metadata.decode(event.metadata)
        order = None
        if event.type in ORDER_EVENT_TYPES:
            target = _decode_order_target.decode(event.payload)
            order = subjects.dispatch_subject(target.region, target.node)
        recorded = RecordedEvent(
            type=event.type, version=event.schema_version, event_id=event.event_id,
            stream_id=event.stream_id, stream_version=event.stream_version, position=position,
            recorded_at_ms=event.recorded_at_ms, metadata=metadata,
            # The writer's canonical JSON, spliced in as it is: not decoded to be re-encoded.
            data=cast(dict[str, Any], msgspec.Raw(event.payload)),
            hash=event_hash.hex(), prev_hash=prev_hash.hex(),
        )  # fmt: skip
        return cls(
            position=position, event_id=event.event_id, stream_id=event.stream_id,
            stream_version=event.stream_version, type=event.type,
            correlation_id=metadata.correlation_id or "", body=encode(recorded),
            hash=event_hash, order_subject=order, owner=metadata.owner,
            traceparent=_relay_span(metadata.traceparent, event.type),
        )  # fmt: skip


def _relay_span(traceparent: object, event_type: str) -> str | None:
    """The moment the relay took a traced event for publishing, as a span (ADR 0154)."""
    if not isinstance(traceparent, str):
        return None
    with tracing.child_span(
        "corridor.relay.publish", tracing.valid(traceparent), {"corridor.event": event_type}
    ) as mine:
        return mine


def names_an_owner(event_type: str) -> bool:
    """Whether an event of this type belongs to an intent (policy, checkpoints, agent keys and
    dead letters do not)."""
    return (
        (event_type in EVENT_TYPES and event_type != CHECKPOINT_EVENT)
        or event_type in RECEIVE_EVENT_TYPES
        or event_type in CHANNEL_OP_EVENT_TYPES
        or event_type in REBALANCE_EVENT_TYPES
        or event_type in JIT_EVENT_TYPES
        or event_type in PAYEE_EVENT_TYPES
    )


class _OrderTarget(msgspec.Struct):
    region: str
    node: str


_decode_metadata = msgspec.json.Decoder(EventMetadata)
_decode_order_target = msgspec.json.Decoder(_OrderTarget)


async def count_new(futures: list[Any]) -> Acked:
    acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=PUBLISH_ACK_TIMEOUT_S)
    # The event stream's messages go out last, the batch's last event last (a duplicate's
    # acknowledgement gives the sequence of the message already stored).
    assert acks and acks[-1].stream == subjects.EVT_STREAM
    new_events = sum(1 for ack in acks if not ack.duplicate and ack.stream == subjects.EVT_STREAM)
    return Acked(new_events, acks[-1].seq)


@dataclass(frozen=True, slots=True)
class Acked:
    """What JetStream acknowledged for one batch."""

    new_events: int  # stored as new (not dropped as duplicates)
    evt_seq: int  # the event stream's sequence of the batch's last event
