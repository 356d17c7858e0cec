"""Between domain events and stored rows: ids, canonical JSON, metadata and upcasting."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from schemas import events as ev
from schemas.limits import CALLER_ID_PATTERN
from schemas.policy_messages import POLICY_EVENT_TYPES
from schemas.records import EventMetadata, RecordedEvent
from services.bus import subjects
from services.engine.ids import event_id_for
from services.eventstore.hashing import canonical_json, event_body
from services.eventstore.port import NewEvent, StoredEvent

AGGREGATE = "intent"
CHECKPOINT_EVENT = ev.LogCheckpointSigned.__name__
# An owner becomes a subject token: a caller id (schemas/limits.py), never '.', '*' or '>'.
_OWNER_TOKEN = re.compile(CALLER_ID_PATTERN)
POLICY_AGGREGATE = "policy"
POLICY_STREAM = "policy-document"
_ALL_EVENT_TYPES: dict[str, type[ev.EventData]] = {**ev.EVENT_TYPES, **POLICY_EVENT_TYPES}

# (type, stored version) -> function lifting the payload one version up. Add an entry when an
# event gets a new version; the domain then only ever sees the latest shape.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _dispatched_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Logged before work orders were signed (ADR 0063): version 2 with no signature.
    return {**payload, "key_id": None, "signature": None}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("IntentDispatched", 1): _dispatched_v1_to_v2,
}


def to_new_events(
    stream_id: str,
    first_version: int,
    events: Sequence[ev.EventData],
    metadata: EventMetadata,
    recorded_at_ms: int,
) -> list[NewEvent]:
    meta_obj = msgspec.to_builtins(metadata)
    meta_json = canonical_json(meta_obj)
    out = []
    for offset, event in enumerate(events):
        version = first_version + offset
        event_type = type(event).__name__
        event_id = event_id_for(stream_id, version)
        payload_obj = msgspec.to_builtins(event)
        out.append(
            NewEvent(
                event_id=event_id,
                stream_id=stream_id,
                stream_version=version,
                type=event_type,
                schema_version=event.VERSION,
                payload=canonical_json(payload_obj),
                metadata=meta_json,
                recorded_at_ms=recorded_at_ms,
                body=event_body(
                    event_id=event_id,
                    stream_id=stream_id,
                    stream_version=version,
                    type=event_type,
                    schema_version=event.VERSION,
                    recorded_at_ms=recorded_at_ms,
                    payload=payload_obj,
                    metadata=meta_obj,
                ),
            )
        )
    return out


def to_domain(stored: StoredEvent) -> ev.EventData:
    cls = _ALL_EVENT_TYPES.get(stored.type)
    if cls is None:
        raise ValueError(f"unknown event type {stored.type!r} at position {stored.position}")
    payload, version = stored.payload, stored.schema_version
    while version < cls.VERSION:
        payload = UPCASTERS[(stored.type, version)](payload)
        version += 1
    return msgspec.convert(payload, cls)


def to_recorded(stored: StoredEvent) -> RecordedEvent:
    return RecordedEvent(
        type=stored.type,
        version=stored.schema_version,
        event_id=stored.event_id,
        stream_id=stored.stream_id,
        stream_version=stored.stream_version,
        position=stored.position,
        recorded_at_ms=stored.recorded_at_ms,
        metadata=msgspec.convert(stored.metadata, EventMetadata),
        data=stored.payload,
        hash=stored.hash.hex(),
        prev_hash=stored.prev_hash.hex(),
    )


def subject_for(event_type: str, owner: str | None) -> str:
    """The subject an event is published on (ADR 0067); ``owner`` is its intent's caller."""
    if event_type in POLICY_EVENT_TYPES:
        return f"{subjects.EVT_POLICY_PREFIX}.{event_type}"
    if event_type == CHECKPOINT_EVENT:
        return f"{subjects.EVT_LOG_PREFIX}.{event_type}"
    if owner is None or not _OWNER_TOKEN.match(owner):
        return f"{subjects.EVT_UNOWNED_PREFIX}.{event_type}"
    return subjects.intent_event_subject(owner, event_type)


def owner_of(stored: StoredEvent) -> str | None:
    """The owner an event names in its metadata (None before ADR 0067, or not an intent's)."""
    owner = stored.metadata.get("owner")
    return owner if isinstance(owner, str) else None
