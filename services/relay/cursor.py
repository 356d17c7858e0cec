"""The relay's cursor: where it stands in the log and in JetStream, as one immutable value.

Every change is a pure function from one cursor to the next, and every cursor checks its own
invariants when it is made, so a transition that would break one fails where it happens
(ADR 0096). The relay (``outbox.py``) holds the current value and does the I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass


class Phase(enum.Enum):
    STANDBY = "standby"  # not leading: another relay publishes, or this one has not started
    # The log may hold what was not handed over (at start, after a NOTIFY that named no
    # position, on the idle poll, or the last read filled a whole batch): read it.
    CATCHING_UP = "catching_up"
    # Publishing what this process hands over; the log is read only when a NOTIFY announces
    # a commit beyond what was sent (another engine's writer).
    FOLLOWING = "following"
    # A stream refused a fenced publish: somebody else wrote to it. The session ends and the
    # next one starts from what the streams hold (ADR 0013).
    FENCED = "fenced"
    # The leader connection or the bus connection was lost: acknowledgements still awaited
    # are given up, and the next session starts from the checkpoint and the streams.
    STEPPING_DOWN = "stepping_down"
    FAILED = "failed"  # any other failure: the session ends, and a new one starts after a back-off


# Phases in which the relay leads and publishes.
LEADING = frozenset({Phase.CATCHING_UP, Phase.FOLLOWING})


@dataclass(frozen=True, slots=True)
class Cursor:
    phase: Phase = Phase.STANDBY
    # Every batch through here is acknowledged by JetStream (the relay's ``position``).
    published_through: int = 0
    # The event stream's sequence of the message at ``published_through`` (0: not known).
    published_seq: int = 0
    # Handed to JetStream, acknowledged or not, and the hash of the event there (None: not
    # known yet, so nothing handed over can be chained onto it).
    sent_through: int = 0
    sent_hash: bytes | None = None
    # The checkpoint in PostgreSQL (-1: none saved by this relay yet).
    saved_through: int = -1
    # Positions up to here may already be in JetStream (an earlier run published them): they
    # go out one by one, as an atomic batch holding a duplicate is refused whole (ADR 0013).
    maybe_published_through: int = 0
    # Committed before this relay became leader: their work orders go out marked as replays.
    replayed_through: int = 0
    # The highest position a NOTIFY announced.
    notified_through: int = 0
    # > 0: the dispatch stream lost work orders through here, and the open ones are still to
    # be re-issued (ADR 0075). Kept across sessions until done.
    repair_through: int = 0

    def __post_init__(self) -> None:
        assert 0 <= self.published_through <= self.sent_through, (
            f"published through {self.published_through} beyond sent {self.sent_through}"
        )
        assert self.published_seq >= 0
        assert -1 <= self.saved_through <= self.published_through, (
            f"checkpoint {self.saved_through} beyond published {self.published_through}"
        )
        assert min(self.maybe_published_through, self.replayed_through) >= 0
        assert self.notified_through >= 0 and self.repair_through >= 0

    @property
    def leading(self) -> bool:
        return self.phase in LEADING

    @property
    def wants_log(self) -> bool:
        """Whether the log may hold something beyond what was sent that was not handed over."""
        return self.phase is Phase.CATCHING_UP or self.notified_through > self.sent_through

    @property
    def unsaved(self) -> bool:
        return self.published_through != self.saved_through

    def may_be_published(self, position: int) -> bool:
        """Whether the event at ``position`` may be in JetStream already (so goes unfenced)."""
        return position <= self.maybe_published_through

    def is_replay(self, position: int) -> bool:
        return position <= self.replayed_through


def started(
    cursor: Cursor,
    *,
    position: int,
    seq: int,
    sent_hash: bytes | None,
    maybe_published_through: int,
    replayed_through: int,
) -> Cursor:
    """A new session from ``position`` (which the checkpoint holds): catch up from the log."""
    return dataclasses.replace(
        cursor, phase=Phase.CATCHING_UP, published_through=position, published_seq=seq,
        sent_through=position, sent_hash=sent_hash, saved_through=position,
        maybe_published_through=maybe_published_through, replayed_through=replayed_through,
    )  # fmt: skip


def repair_found(cursor: Cursor, through: int) -> Cursor:
    """A start check found the dispatch stream short of work orders through ``through``."""
    return dataclasses.replace(cursor, repair_through=max(cursor.repair_through, through))


def repaired(cursor: Cursor) -> Cursor:
    """The open work orders are queued for re-issue."""
    return dataclasses.replace(cursor, repair_through=0)


def sent(cursor: Cursor, through: int, last_hash: bytes) -> Cursor:
    """A batch up to ``through`` went to JetStream, its acknowledgements still on their way."""
    assert cursor.leading, f"sent while {cursor.phase.value}"
    assert through > cursor.sent_through, f"sent {through} after {cursor.sent_through}"
    return dataclasses.replace(cursor, sent_through=through, sent_hash=last_hash)


def acknowledged(cursor: Cursor, through: int, evt_seq: int) -> Cursor:
    """JetStream stored every batch up to ``through``; the last event at ``evt_seq``."""
    assert cursor.published_through <= through <= cursor.sent_through, (
        f"acknowledged {through} outside {cursor.published_through}..{cursor.sent_through}"
    )
    return dataclasses.replace(cursor, published_through=through, published_seq=evt_seq)


def read_log(cursor: Cursor, *, batch_full: bool) -> Cursor:
    """The log was read after the sent position: a full batch means more may follow."""
    if not cursor.leading:
        return cursor
    return dataclasses.replace(cursor, phase=Phase.CATCHING_UP if batch_full else Phase.FOLLOWING)


def poll_due(cursor: Cursor) -> Cursor:
    """Idle for a whole poll interval: read the log in case a NOTIFY was lost."""
    if not cursor.leading:
        return cursor
    return dataclasses.replace(cursor, phase=Phase.CATCHING_UP)


def notified(cursor: Cursor, position: int | None) -> Cursor:
    """A commit's NOTIFY, naming its last position (None: a payload that is no position)."""
    if position is None:
        return poll_due(cursor)
    if position <= cursor.sent_through:
        return cursor  # handed over and sent already
    return dataclasses.replace(cursor, notified_through=max(cursor.notified_through, position))


def saved(cursor: Cursor) -> Cursor:
    """The checkpoint now holds the published position."""
    return dataclasses.replace(cursor, saved_through=cursor.published_through)


def ended(cursor: Cursor, phase: Phase) -> Cursor:
    """The session ended (``phase`` says why); in-flight batches are given up, so the sent
    position falls back to what was acknowledged."""
    assert phase not in LEADING, f"a session cannot end in {phase.value}"
    return dataclasses.replace(
        cursor, phase=phase, sent_through=cursor.published_through, sent_hash=None
    )
