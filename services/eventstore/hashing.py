"""The canonical bytes each event's hash covers, computable from a row or from a replay line.

body = JSON (sorted keys, no spaces) of
  [event_id, stream_id, stream_version, type, schema_version, recorded_at_ms, payload, metadata]
hash = sha256(prev_hash || position as 8-byte big-endian || body)
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

GENESIS_HASH = bytes(32)

_encoder = msgspec.json.Encoder(order="sorted")


def event_body(
    *,
    event_id: str,
    stream_id: str,
    stream_version: int,
    type: str,
    schema_version: int,
    recorded_at_ms: int,
    payload: Any,
    metadata: Any,
) -> bytes:
    return _encoder.encode(
        [
            event_id,
            stream_id,
            stream_version,
            type,
            schema_version,
            recorded_at_ms,
            payload,
            metadata,
        ]
    )


def chain_hash(prev_hash: bytes, position: int, body: bytes) -> bytes:
    return hashlib.sha256(prev_hash + position.to_bytes(8, "big", signed=True) + body).digest()


def canonical_json(value: Any) -> bytes:
    return _encoder.encode(value)
