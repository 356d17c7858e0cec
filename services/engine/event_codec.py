"""Between domain events and stored rows: ids, canonical JSON, metadata and upcasting."""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from schemas import events as ev
from schemas.agent_key_messages import AGENT_KEY_EVENT_TYPES
from schemas.dead_letters import DEAD_LETTER_EVENT_TYPES
from schemas.limits import CALLER_ID_PATTERN
from schemas.policy_messages import POLICY_EVENT_TYPES
from schemas.reconciliation_messages import RECONCILIATION_EVENT_TYPES
from schemas.records import EventMetadata, RecordedEvent
from schemas.upcasting import EventVersionError, decode
from schemas.webhook_messages import WEBHOOK_EVENT_TYPES
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
DEAD_LETTER_AGGREGATE = "deadletter"
AGENT_KEY_AGGREGATE = "agent-key"
RECONCILIATION_AGGREGATE = "reconciliation"
WEBHOOK_AGGREGATE = "webhook"


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
    """The stored event in its current shape (``schemas/upcasting.py``). Raises an
    ``EventVersionError`` naming the position for an unknown type or an unreadable version."""
    try:
        return decode(stored.type, stored.schema_version, stored.payload)
    except EventVersionError as exc:
        raise type(exc)(
            f"{exc} (position {stored.position})", event_type=exc.event_type, version=exc.version
        ) from None


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
    # Operators' desks (ADR 0068, 0080): readable by operators and auditors, by no caller.
    if event_type in DEAD_LETTER_EVENT_TYPES:
        return f"{subjects.EVT_PREFIX}.{DEAD_LETTER_AGGREGATE}.{event_type}"
    if event_type in AGENT_KEY_EVENT_TYPES:
        return f"{subjects.EVT_PREFIX}.{AGENT_KEY_AGGREGATE}.{event_type}"
    if event_type in RECONCILIATION_EVENT_TYPES:  # ADR 0151
        return f"{subjects.EVT_PREFIX}.{RECONCILIATION_AGGREGATE}.{event_type}"
    if event_type in WEBHOOK_EVENT_TYPES:  # ADR 0175: URLs stay off every caller's subtree
        return f"{subjects.EVT_PREFIX}.{WEBHOOK_AGGREGATE}.{event_type}"
    if event_type == CHECKPOINT_EVENT:
        return f"{subjects.EVT_LOG_PREFIX}.{event_type}"
    if owner is None or not _OWNER_TOKEN.match(owner):
        return f"{subjects.EVT_UNOWNED_PREFIX}.{event_type}"
    return subjects.intent_event_subject(owner, event_type)


def owner_of(stored: StoredEvent) -> str | None:
    """The owner an event names in its metadata (None before ADR 0067, or not an intent's)."""
    owner = stored.metadata.get("owner")
    return owner if isinstance(owner, str) else None
