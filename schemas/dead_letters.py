"""The dead-letter queue's tooling: requests, replies and the audit events (ADR 0080).

An operator lists, replays or drops messages of ``CORRIDOR_DLQ`` through the engine
(``corridor.api.v1.dlq.<verb>.<operator_id>``). Who acts is the subject's token, bound to the
operator's credential (ADR 0061), never a payload field. Each replay and drop is recorded in
the log, before it is carried out, as ``DeadLetterReplayed``/``DeadLetterDropped`` on the
stream ``dead-letters``, naming the operator and the reason.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas.common import Message
from schemas.events import EventData

# One page of `corridor dlq list`; a screenful of rows, and a reply far below NATS's 1 MiB.
DLQ_LIST_MAX: Final = 100
# Sequences one replay or drop names: each is one message read, one publish or delete and
# one audit event, within one request's timeout.
DLQ_ACTION_MAX: Final = 100
# A reason is a sentence for the audit trail, not a document.
DLQ_REASON_CHARS_MAX: Final = 500
# The error text a dead letter carries is cut to this in a listing.
DLQ_ERROR_CHARS_MAX: Final = 500

Sequence = Annotated[int, msgspec.Meta(ge=1)]
Sequences = Annotated[tuple[Sequence, ...], msgspec.Meta(min_length=1, max_length=DLQ_ACTION_MAX)]
ActionReason = Annotated[str, msgspec.Meta(min_length=1, max_length=DLQ_REASON_CHARS_MAX)]


class ListDeadLetters(Message, frozen=True, kw_only=True):
    """Query: up to ``limit`` dead letters from stream sequence ``from_sequence`` on."""

    from_sequence: Sequence = 1
    limit: Annotated[int, msgspec.Meta(ge=1, le=DLQ_LIST_MAX)] = 20
    version: Literal[1] = 1


class ReplayDeadLetters(Message, frozen=True, kw_only=True):
    """Put dead letters back where they came from (a command on ``CORRIDOR_CMD``, a work
    order on ``CORRIDOR_DISPATCH``), then delete them from the queue."""

    sequences: Annotated[
        tuple[Sequence, ...], msgspec.Meta(min_length=1, max_length=DLQ_ACTION_MAX)
    ]
    reason: ActionReason
    version: Literal[1] = 1


class DropDeadLetters(Message, frozen=True, kw_only=True):
    """Delete dead letters for good (their commands are never applied)."""

    sequences: Annotated[
        tuple[Sequence, ...], msgspec.Meta(min_length=1, max_length=DLQ_ACTION_MAX)
    ]
    reason: ActionReason
    version: Literal[1] = 1


DeadLetterRequest = ListDeadLetters | ReplayDeadLetters | DropDeadLetters


class DeadLetterEntry(msgspec.Struct, frozen=True, kw_only=True):
    sequence: int
    subject: str
    original_subject: str | None
    error_code: str | None
    error_field: str | None
    error_message: str | None
    stored_at: str | None  # RFC 3339, the server's clock
    bytes: int


class DeadLetterList(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ok: Literal[True] = True
    entries: tuple[DeadLetterEntry, ...]
    # Where the next page starts; None when this page reached the end of the queue.
    next_sequence: int | None
    messages: int  # in the queue now
    version: Literal[1] = 1


Outcome = Literal["replayed", "dropped", "not_found", "not_replayable"]


class DeadLetterResult(msgspec.Struct, frozen=True, kw_only=True):
    sequence: int
    outcome: Outcome
    detail: str = ""


class DeadLetterActionDone(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ok: Literal[True] = True
    action: Literal["replay", "drop"]
    operator_id: str
    results: tuple[DeadLetterResult, ...]
    version: Literal[1] = 1


# -- audit events, on the log's stream "dead-letters" --------------------------------------


class DeadLetterReplayed(EventData, frozen=True, kw_only=True):
    """An operator put a dead letter back on ``replayed_to``. Recorded before the publish."""

    operator_id: str
    reason: str
    sequence: int
    original_subject: str
    error_code: str | None = None
    replayed_to: str


class DeadLetterDropped(EventData, frozen=True, kw_only=True):
    """An operator deleted a dead letter for good. Recorded before the delete."""

    operator_id: str
    reason: str
    sequence: int
    original_subject: str | None = None
    error_code: str | None = None


DEAD_LETTER_EVENT_TYPES: dict[str, type[EventData]] = {
    cls.__name__: cls for cls in (DeadLetterReplayed, DeadLetterDropped)
}
