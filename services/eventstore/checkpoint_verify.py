"""Verifying the log against the engine's signed checkpoints (ADR 0065).

The hash chain (``verify_chain``) proves the log is self-consistent; it cannot prove that
whoever could write the table did not rewrite it and recompute every hash. A checkpoint signs
(position, hash at that position) with the engine's Ed25519 key, which the database never
holds. ``verify_checkpoints`` checks, against the engine's public keys:

- every checkpoint's signature, from the table (stream ``log-checkpoints``) and from the
  JetStream stream ``CORRIDOR_CHECKPOINTS`` (which nobody may delete from or purge);
- that the log's hash at each checkpointed position equals the signed hash;
- that no checkpoint is missing: no run of more than ``gap_max`` events without one;
- that every checkpoint in the JetStream stream is in the table too;

and reports the unsigned tail: the events after the newest checkpoint, which no signature
covers yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from schemas.events import LogCheckpointSigned
from services.eventstore.checkpoint_message import CANONICAL_TAG as CANONICAL_TAG
from services.eventstore.checkpoint_message import checkpoint_message as checkpoint_message
from services.eventstore.port import EventStore
from services.signing.port import SigningError, Verifier, from_b64url

CHECKPOINT_STREAM_ID: Final = "log-checkpoints"
# The engine checkpoints every 1,000 events (services/engine/checkpoints.py); the trigger is
# asynchronous, so batches committed while a checkpoint is signed and appended overshoot it.
# Twice the interval leaves that room and still catches a removed checkpoint.
GAP_EVENTS_MAX: Final = 2_000
# Problems listed one by one in a report; beyond this only counted (a wholesale rewrite
# would otherwise print one line per checkpoint).
PROBLEMS_LISTED_MAX: Final = 50


class CheckpointReport(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    head_position: int
    checkpoints_in_table: int
    checkpoints_in_stream: int | None  # None: the JetStream stream was not checked
    newest_checkpoint_position: int
    unsigned_tail: int  # events after the newest valid checkpoint
    problems_total: int
    problems: tuple[str, ...] = ()
    # Why the JetStream stream was not read (unreachable, not permitted), when it was not.
    stream_unchecked: str | None = None


def check_signature(verifier: Verifier, checkpoint: LogCheckpointSigned) -> str | None:
    """``None`` if ``checkpoint`` is signed by a trusted key, else why not."""
    try:
        signature = from_b64url(checkpoint.signature)
        verifier.verify(
            checkpoint.key_id,
            checkpoint_message(checkpoint.key_id, checkpoint.position, checkpoint.hash),
            signature,
        )
    except ValueError:
        return f"checkpoint {checkpoint.checkpoint_id}: signature is not base64url"
    except SigningError as exc:
        return f"checkpoint {checkpoint.checkpoint_id}: {exc.code}: {exc}"
    return None


async def table_checkpoints(store: EventStore) -> list[LogCheckpointSigned]:
    """The checkpoints recorded in the log itself (undecodable ones are reported as such by
    ``verify_checkpoints``, via a placeholder with an empty signature)."""
    out = []
    for event in await store.read_stream(CHECKPOINT_STREAM_ID):
        try:
            out.append(msgspec.convert(event.payload, LogCheckpointSigned))
        except msgspec.ValidationError:
            out.append(_malformed(f"malformed@{event.position}"))
    return out


async def verify_checkpoints(
    store: EventStore,
    verifier: Verifier,
    *,
    published: Sequence[LogCheckpointSigned] | None = None,
    gap_max: int = GAP_EVENTS_MAX,
    stream_unchecked: str | None = None,
) -> CheckpointReport:
    """Check the log against the checkpoints in the table and, if given, those ``published``
    to JetStream. Reads one hash per checkpoint: cheap next to ``verify_chain``."""
    problems: list[str] = []
    head = await store.head_position()
    in_table = await table_checkpoints(store)
    table_ids = {c.checkpoint_id for c in in_table}
    candidates: dict[str, LogCheckpointSigned] = {c.checkpoint_id: c for c in in_table}
    if published is not None:
        for checkpoint in published:
            if checkpoint.checkpoint_id not in table_ids:
                problems.append(
                    f"checkpoint {checkpoint.checkpoint_id} (position {checkpoint.position}) "
                    "is in the stream but missing from the table"
                )
            candidates.setdefault(checkpoint.checkpoint_id, checkpoint)
    valid: set[int] = set()
    for checkpoint in sorted(candidates.values(), key=lambda c: c.position):
        problem = check_signature(verifier, checkpoint)
        if problem is None:
            problem = await _check_hash(store, checkpoint, head)
        if problem is None:
            valid.add(checkpoint.position)
        else:
            problems.append(problem)
    previous = 0
    for position in sorted(valid):
        if position - previous > gap_max:
            problems.append(
                f"missing checkpoint: none between positions {previous} and {position} "
                f"({position - previous} events, limit {gap_max})"
            )
        previous = position
    newest = max(valid, default=0)
    return CheckpointReport(
        ok=not problems,
        head_position=head,
        checkpoints_in_table=len(in_table),
        checkpoints_in_stream=None if published is None else len(published),
        newest_checkpoint_position=newest,
        unsigned_tail=head - newest,
        problems_total=len(problems),
        problems=tuple(problems[:PROBLEMS_LISTED_MAX]),
        stream_unchecked=stream_unchecked,
    )


async def _check_hash(store: EventStore, checkpoint: LogCheckpointSigned, head: int) -> str | None:
    if checkpoint.position > head:
        return (
            f"checkpoint {checkpoint.checkpoint_id}: signed position {checkpoint.position} is "
            f"beyond the log's head {head} (the log was truncated)"
        )
    actual = await store.hash_at(checkpoint.position)
    if actual is None or actual.hex() != checkpoint.hash:
        return (
            f"checkpoint {checkpoint.checkpoint_id}: the log's hash at position "
            f"{checkpoint.position} is not the signed hash (the log was rewritten)"
        )
    return None


async def read_published(js: JetStreamContext, stream: str) -> list[LogCheckpointSigned]:
    """Every checkpoint in the JetStream stream ``stream``, oldest first (by message get, so a
    reader needs only STREAM.INFO and STREAM.MSG.GET on it)."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue  # deny_delete: cannot happen on our stream, but a gap is not a crash
        try:
            out.append(msgspec.json.decode(msg.data or b"", type=LogCheckpointSigned))
        except msgspec.DecodeError:
            out.append(_malformed(f"malformed-msg@{seq}"))
    return out


def _malformed(checkpoint_id: str) -> LogCheckpointSigned:
    """A placeholder for a record that is not a checkpoint: it fails the signature check."""
    return LogCheckpointSigned(
        checkpoint_id=checkpoint_id, position=0, hash="", key_id="", signature="", signed_at_ms=0
    )
