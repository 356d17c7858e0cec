"""Writing an audit bundle from the log, through the ``EventStore`` port (ADR 0150).

The events are read a page at a time and streamed to a temporary file beside the output
while their content hash is computed; the manifest (which needs that hash and the last
event's) is then written first into a second temporary file, the events copied after it,
and the result renamed over the output: a reader never sees half a bundle, and memory holds
one page and the range's checkpoints, never the range.

A time range selects the contiguous run of positions from the first event recorded at or
after ``from_ms`` to the event before the first one recorded after ``to_ms`` (a chain has
no holes; with the engine's clock monotonic that is every event recorded in the range).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from services.audit.bundle import (
    BUNDLE_EVENTS_MAX,
    FORMAT,
    MANIFEST_CHECKPOINTS_MAX,
    VERSION,
    BundleCheckpoint,
    Manifest,
    checkpoint_of,
    encode_line,
    event_line,
    sealed,
)
from services.eventstore.port import EventStore, StoredEvent

# Events per read: one round trip per ~5,000 events, as the relay and replay page.
EXPORT_PAGE: Final = 5_000
CHECKPOINT_EVENT: Final = "LogCheckpointSigned"
# Bytes copied at a time from the events' temporary file into the bundle.
_COPY_CHUNK: Final = 1024 * 1024


class ExportError(Exception):
    """The range cannot be exported as asked (empty, or beyond a limit); the message says why."""


class _Run(msgspec.Struct, kw_only=True):
    first: StoredEvent | None = None
    last: StoredEvent | None = None
    count: int = 0


async def export_bundle(
    store: EventStore,
    out: Path,
    *,
    from_position: int = 1,
    to_position: int | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    now_ms: int,
    page: int = EXPORT_PAGE,
) -> Manifest:
    """Write the bundle of the range to ``out`` (an absolute path); its manifest.
    ``ExportError`` if the range holds no event or more than the limits allow."""
    assert from_position >= 1 and page >= 1 and out.is_absolute()
    head = await store.head_position()
    through = head if to_position is None else min(to_position, head)
    digest = hashlib.sha256()
    with tempfile.TemporaryFile(dir=out.parent, prefix=".bundle-events.") as events:
        run = await _write_events(
            store, events, digest, after=from_position - 1, through=through,
            from_ms=from_ms, to_ms=to_ms, page=page,
        )  # fmt: skip
        if run.first is None or run.last is None:
            raise ExportError("the range holds no events")
        checkpoints = await _checkpoints(
            store, low=run.first.position - 1, high=run.last.position, page=page
        )
        manifest = sealed(
            Manifest(
                format=FORMAT,
                version=VERSION,
                exported_at_ms=now_ms,
                from_position=run.first.position,
                to_position=run.last.position,
                from_ms=from_ms,
                to_ms=to_ms,
                event_count=run.count,
                prev_hash=run.first.prev_hash.hex(),
                last_hash=run.last.hash.hex(),
                content_sha256=digest.hexdigest(),
                checkpoints=tuple(checkpoints),
            )
        )
        events.seek(0)
        _write_atomically(out, encode_line(manifest), events)
    return manifest


async def _write_events(
    store: EventStore,
    sink: BinaryIO,
    digest: hashlib._Hash,
    *,
    after: int,
    through: int,
    from_ms: int | None,
    to_ms: int | None,
    page: int,
) -> _Run:
    run = _Run()
    cursor = after
    while cursor < through:
        batch = await store.read_all(after_position=cursor, limit=min(page, through - cursor))
        if not batch:
            break
        for event in batch:
            if run.first is None and from_ms is not None and event.recorded_at_ms < from_ms:
                continue
            if to_ms is not None and event.recorded_at_ms > to_ms:
                return run
            if run.count >= BUNDLE_EVENTS_MAX:
                raise ExportError(
                    f"the range holds more than {BUNDLE_EVENTS_MAX} events: export it in parts"
                )
            line = event_line(event)
            sink.write(line)
            digest.update(line)
            run.first = run.first or event
            run.last = event
            run.count += 1
        cursor = batch[-1].position
    return run


async def _checkpoints(
    store: EventStore, *, low: int, high: int, page: int
) -> list[BundleCheckpoint]:
    """The checkpoints signing a position in ``[low, high]``, in log order. A checkpoint is
    recorded after the position it signs, so the scan starts after ``low`` and stops at the
    first checkpoint signing beyond ``high`` (or at the head, for an unsigned tail)."""
    found: list[BundleCheckpoint] = []
    head = await store.head_position()  # read again: a checkpoint may have signed the range
    cursor = low
    while cursor < head:
        batch = await store.read_from(
            after_position=cursor, through_position=head, types=(CHECKPOINT_EVENT,), limit=page
        )
        if not batch:
            break
        for event in batch:
            try:
                checkpoint = checkpoint_of(event.payload)
            except msgspec.ValidationError:
                continue  # not a checkpoint: the event itself is in the bundle if in range
            if checkpoint.position > high:
                return found
            if checkpoint.position < low:
                continue
            if len(found) >= MANIFEST_CHECKPOINTS_MAX:
                raise ExportError(
                    f"the range holds more than {MANIFEST_CHECKPOINTS_MAX} checkpoints: "
                    "export it in parts"
                )
            found.append(checkpoint)
        cursor = batch[-1].position
    return found


def _write_atomically(out: Path, manifest: bytes, events: BinaryIO) -> None:
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(manifest)
            while chunk := events.read(_COPY_CHUNK):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
