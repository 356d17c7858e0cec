"""The bytes a log checkpoint's signature covers (ADR 0065), with no I/O and no client library,
so an offline verifier (``services/audit/``) and the engine sign and check the same thing."""

from __future__ import annotations

from typing import Final

from services.eventstore.hashing import canonical_json

CANONICAL_TAG: Final = "corridor/checkpoint/v1"


def checkpoint_message(key_id: str, position: int, hash_hex: str) -> bytes:
    """The canonical bytes a checkpoint's signature covers: compact JSON of
    ``["corridor/checkpoint/v1", key_id, position, hash_hex]``."""
    return canonical_json([CANONICAL_TAG, key_id, position, hash_hex])
