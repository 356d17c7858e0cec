"""Envelopes that carry recorded events on the wire and in audit replays."""

from __future__ import annotations

from typing import Any

import msgspec


class EventMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    correlation_id: str
    causation_id: str
    actor: str
    policy_version: int | None = None
    # The caller that submitted the intent, on every event of an intent (ADR 0067): the relay
    # publishes the event under that caller's subtree without reading the log again. Absent on
    # events written before it existed, and on policy and checkpoint events.
    owner: str | None = None
    # The W3C trace context of the span that decided this event (ADR 0154), when the command
    # that caused it carried one: the relay and the executor continue the trace from it.
    traceparent: str | None = None


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event as stored: the body of every ``corridor.evt.*`` message and replay line.

    ``type``/``version`` name the schema of ``data``. ``hash`` chains to ``prev_hash`` so that
    tampering with the log is detectable (``corridor replay --verify``).
    """

    type: str
    version: int
    event_id: str
    stream_id: str
    stream_version: int
    position: int
    recorded_at_ms: int
    metadata: EventMetadata
    data: dict[str, Any]
    hash: str
    prev_hash: str
