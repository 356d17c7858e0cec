"""The audit bundle's format: one manifest line, then one event per line (ADR 0150).

A bundle is UTF-8 text, every line ending in ``\\n``:

- line 1, the manifest (``Manifest``): the range, the chain's hash before the first event
  (``prev_hash``) and after the last (``last_hash``), the engine-signed checkpoints that sign
  a position in ``[from_position - 1, to_position]``, ``content_sha256`` (SHA-256 of every
  event line's bytes, newlines included, in file order), and ``manifest_sha256`` (SHA-256 of
  the manifest's canonical JSON without that field);
- lines 2.. : one event each (``EventLine``), the log's columns, in canonical JSON (keys
  sorted, no spaces: ``services/eventstore/hashing.canonical_json``).

No I/O here: the exporter (``export.py``) and the verifier (``verify.py``) share these.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from services.eventstore.hashing import canonical_json
from services.eventstore.port import StoredEvent

FORMAT: Final = "corridor-audit-bundle"
VERSION: Final = 1
# A line longer than this is refused before it is parsed. The largest event is a policy
# document, whose file may be 16 MiB (services/policy/loader.py); twice that leaves room for
# JSON escaping. The manifest's checkpoints fit well within it (see MANIFEST_CHECKPOINTS_MAX).
LINE_BYTES_MAX: Final = 32 * 1024 * 1024
# Checkpoints one manifest lists: ~260 bytes each, so at most ~13 MiB. A busy log has one per
# 1,000 events, a quiet one up to one per event pair (every 10 s, ADR 0065): a range needing
# more is exported in parts.
MANIFEST_CHECKPOINTS_MAX: Final = 50_000
# Events one bundle holds: ~10 GB of lines at most, an afternoon to verify; a larger audit is
# several bundles (each one's prev_hash is the previous one's last_hash).
BUNDLE_EVENTS_MAX: Final = 10_000_000
HASH_HEX_CHARS: Final = 64
# The largest position the hash formula can encode (8-byte signed big-endian).
POSITION_MAX: Final = 2**63 - 1


class BundleCheckpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A ``LogCheckpointSigned`` as the log holds it: ``signature`` (base64url, unpadded) by
    ``key_id`` over ``["corridor/checkpoint/v1", key_id, position, hash]`` (ADR 0065)."""

    checkpoint_id: str
    position: int
    hash: str
    key_id: str
    signature: str
    signed_at_ms: int


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str
    version: int
    exported_at_ms: int
    from_position: int
    to_position: int
    # The time range asked for (``None``: not bounded by time), in ms since the epoch, UTC.
    from_ms: int | None
    to_ms: int | None
    event_count: int
    prev_hash: str  # hex; 64 zeros (genesis) when from_position is 1
    last_hash: str  # hex: the hash of the event at to_position
    content_sha256: str
    checkpoints: tuple[BundleCheckpoint, ...]
    manifest_sha256: str = ""


class EventLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One event as the ``events`` table holds it; hashes in lowercase hex."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    recorded_at_ms: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    prev_hash: str
    hash: str


def event_line(event: StoredEvent) -> bytes:
    """The bundle line of a stored event, with its newline."""
    line = EventLine(
        position=event.position,
        event_id=event.event_id,
        stream_id=event.stream_id,
        stream_version=event.stream_version,
        type=event.type,
        schema_version=event.schema_version,
        recorded_at_ms=event.recorded_at_ms,
        payload=event.payload,
        metadata=event.metadata,
        prev_hash=event.prev_hash.hex(),
        hash=event.hash.hex(),
    )
    return encode_line(line)


def encode_line(value: msgspec.Struct) -> bytes:
    return canonical_json(msgspec.to_builtins(value)) + b"\n"


def manifest_digest(manifest: Manifest) -> str:
    """SHA-256 (hex) of the manifest's canonical JSON without ``manifest_sha256``."""
    fields = msgspec.to_builtins(manifest)
    fields.pop("manifest_sha256", None)
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def sealed(manifest: Manifest) -> Manifest:
    """``manifest`` with its own digest filled in."""
    return msgspec.structs.replace(manifest, manifest_sha256=manifest_digest(manifest))


class _LoggedCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A ``LogCheckpointSigned`` payload read leniently: a later version may add fields."""

    checkpoint_id: str
    position: int
    hash: str
    key_id: str
    signature: str
    signed_at_ms: int


def checkpoint_of(payload: dict[str, Any]) -> BundleCheckpoint:
    """The checkpoint a ``LogCheckpointSigned`` payload holds; ``msgspec.ValidationError`` if
    it holds none."""
    logged = msgspec.convert(payload, _LoggedCheckpoint)
    return BundleCheckpoint(**msgspec.structs.asdict(logged))
