"""Deterministic identifiers. Derived, never random, so replays and retries agree."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from services.eventstore.hashing import canonical_json

_INTENT_NS = uuid.UUID("6f1c1d8e-43a1-4a43-9a5e-1f0c7d3c2b10")
_EVENT_NS = uuid.UUID("0b3e6a52-5f0e-4f55-8a7c-3d1f5a9b7e21")


def intent_id_for(caller_id: str, idempotency_key: str) -> str:
    """Same caller and key, same intent id: concurrent duplicates collide on one stream."""
    return str(uuid.uuid5(_INTENT_NS, f"{caller_id}\x1f{idempotency_key}"))


def event_id_for(stream_id: str, stream_version: int) -> str:
    """Unique because (stream, version) is unique in the log; stable across relay restarts."""
    return str(uuid.uuid5(_EVENT_NS, f"{stream_id}/{stream_version}"))


def fingerprint(request: Any) -> str:
    return hashlib.sha256(canonical_json(request)).hexdigest()
