"""Where a new relay session starts, checked against what the streams hold (ADR 0062, 0075).

JetStream is only a transport. At start the relay checks that the event stream still holds the
message its checkpoint names and rewinds if JetStream lost messages, so everything is
re-published from the log. If the dispatch stream lost work orders the event stream still
holds, the orders of every attempt still waiting for its node are re-issued (ADR 0075).
Only what the relay can check decides: a message in a stream that it cannot match against the
log (whatever its headers claim) is flagged as foreign and never makes it rewind.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec
import structlog

from services.bus import subjects
from services.bus.port import Bus, NotFound, StoredMessage
from services.engine.open_attempts import last_order_position
from services.eventstore.port import EventStore
from services.relay.checkpoint import load_checkpoint, save_checkpoint

log = structlog.get_logger("corridor.relay")

# Messages the relay reads back from a stream's end at start to find the last one it wrote.
# Nobody else may publish into these streams (ADR 0060), so the last message is nearly always
# the relay's own; the limit bounds the start against a stream stuffed with foreign messages,
# beyond which the relay does not guess where its own messages end.
TAIL_SCAN_MSGS_MAX = 64
# A Corridor-Position header longer than this is not a position (bigint has 19 digits).
POSITION_HEADER_CHARS_MAX = 20
# Foreign messages' subjects and headers are their sender's text: logged no longer than this.
FOREIGN_LOG_CHARS_MAX = 128


@dataclass(frozen=True, slots=True)
class StartPoint:
    """Where a session resumes, and what it must do first."""

    position: int  # published through here (the checkpoint, saved again after a rewind)
    seq: int  # the event stream's sequence of the message at ``position`` (0: not known)
    maybe_published_through: int  # see Cursor.maybe_published_through
    repair_through: int  # > 0: the dispatch stream lost orders through here (ADR 0075)


class StartCheck:
    """Reads the checkpoint and the streams' ends, and decides where to resume."""

    def __init__(self, store: EventStore, bus: Bus) -> None:
        self._store = store
        self._bus = bus
        # Messages found in the streams that the relay did not write (ADR 0062).
        self.foreign_messages = 0

    async def start_point(self) -> StartPoint:
        """Where to resume, the event stream's sequence of that position's message, and what
        may be published already.

        Only what the relay can check decides (ADR 0062): its checkpoint in PostgreSQL, and
        messages in the streams that match the log's event at their position. A foreign
        message (whatever its headers claim) is flagged and skipped."""
        checkpoint, checkpoint_seq = await load_checkpoint(self._store)
        head = await self._store.head_position()
        held = await self._holds_checkpoint(checkpoint, checkpoint_seq, head)
        evt_end = await self._stream_end(subjects.EVT_STREAM, head)
        dispatch_end = await self._stream_end(subjects.DISPATCH_STREAM, head)
        if held is Held.YES and evt_end.known and evt_end.position < checkpoint:
            # The stream holds the checkpoint, so an end below it is a replayed copy of an old
            # message: nothing tells where the relay's own messages end.
            log.warning("relay_stream_end_contradicts_checkpoint", checkpoint=checkpoint,
                        stream_position=evt_end.position)  # fmt: skip
            evt_end = StreamEnd.unknown()
        position = resume_position(checkpoint, held, evt_end)
        repair_through = 0
        if dispatch_end.known and position > 0:
            last_order = await last_order_position(self._store, through_position=position)
            if last_order > dispatch_end.position:
                # The event stream holds what the dispatch stream lost (deleted, or emptied by
                # its limits): events are not re-published, so the open orders are re-issued.
                log.warning("relay_dispatch_stream_lost", last_order=last_order,
                            stream_position=dispatch_end.position)  # fmt: skip
                repair_through = position
        seq = 0  # the event stream's sequence of the message at ``position``, if known
        if held is Held.YES and position == checkpoint:
            seq = checkpoint_seq
        elif evt_end.known and evt_end.position == position:
            seq = evt_end.seq
        if position < checkpoint:
            if not evt_end.known:
                log.error("relay_stream_lost_and_end_unknown", checkpoint=checkpoint)
            log.warning("relay_rewind", checkpoint=checkpoint, stream_position=position)
            await save_checkpoint(self._store, position, seq)
        return StartPoint(
            position=position, seq=seq, repair_through=repair_through,
            maybe_published_through=maybe_published_through(evt_end, dispatch_end, head),
        )  # fmt: skip

    async def _holds_checkpoint(self, checkpoint: int, seq: int, head: int) -> Held:
        """Whether the event stream still holds the message at the checkpoint's position."""
        if checkpoint == 0:
            return Held.YES
        if seq == 0:
            return Held.UNCHECKED
        try:
            msg = await self._bus.get_message(subjects.EVT_STREAM, seq)
        except NotFound:
            return Held.NO
        position = await self.ours(msg, head)
        if position is None:
            self.flag_foreign(subjects.EVT_STREAM, seq, msg)
            return Held.NO  # the stream was replaced: its sequence now holds something else
        # Ours at another position: the checkpoint was moved without its sequence (an
        # operator's reset), so this message proves nothing about it.
        return Held.YES if position == checkpoint else Held.UNCHECKED

    async def _stream_end(self, stream: str, head: int) -> StreamEnd:
        """The last message of the relay's own in ``stream``, read back from its end."""
        state = await self._bus.stream_state(stream)
        first_seq = max(state.first_seq, 1)
        seq = state.last_seq if state.messages else 0
        scanned = 0
        while seq >= first_seq:
            if scanned == TAIL_SCAN_MSGS_MAX:
                log.warning("relay_stream_end_unknown", stream=stream, scanned=scanned)
                return StreamEnd.unknown()
            scanned += 1
            try:
                msg = await self._bus.get_message(stream, seq)
            except NotFound:  # deleted from the middle of the stream
                seq -= 1
                continue
            position = await self.ours(msg, head)
            if position is not None and msg.headers.get(subjects.HDR_REISSUED):
                seq -= 1  # a re-issued old order says nothing about where the stream ends
                continue
            if position is not None:
                return StreamEnd(position=position, seq=seq, known=True)
            self.flag_foreign(stream, seq, msg)
            seq -= 1
        return StreamEnd(position=0, seq=0, known=True)  # none of the log's events in it

    async def ours(self, msg: StoredMessage, head: int) -> int | None:
        """The position of the log's event that ``msg`` carries, or None if it carries none:
        its position header, message id and body must all match the event in the log."""
        headers = msg.headers
        raw_position = headers.get(subjects.HDR_POSITION, "")
        if not (0 < len(raw_position) <= POSITION_HEADER_CHARS_MAX and raw_position.isdigit()):
            return None
        position = int(raw_position)
        if not 0 < position <= head:
            return None
        try:
            stamp = _decode_stamp.decode(msg.data)
        except (msgspec.DecodeError, ValueError):
            return None
        [event] = await self._store.read_all(after_position=position - 1, limit=1)
        assert event.position == position, "positions in the log are gapless"
        # A re-issued order (ADR 0075) carries its round's token in its message id.
        reissued = headers.get(subjects.HDR_REISSUED)
        msg_id = f"{event.event_id}:reissue:{reissued}" if reissued else event.event_id
        if not (
            headers.get(subjects.HDR_MSG_ID) == msg_id
            and stamp.event_id == event.event_id
            and stamp.position == position
            and stamp.hash == event.hash.hex()
        ):
            return None
        return position

    def flag_foreign(self, stream: str, seq: int, msg: StoredMessage) -> None:
        self.foreign_messages += 1
        claimed = msg.headers.get(subjects.HDR_POSITION, "")
        log.warning(
            "relay_foreign_message", stream=stream, seq=seq,
            subject=msg.subject[:FOREIGN_LOG_CHARS_MAX],
            claimed_position=claimed[:FOREIGN_LOG_CHARS_MAX],
        )  # fmt: skip


class Held(enum.Enum):
    """Whether the event stream still holds the message at the relay's checkpoint."""

    YES = "yes"
    NO = "no"  # proven lost: the sequence saved with the checkpoint holds nothing of it
    UNCHECKED = "unchecked"  # no sequence was saved with this checkpoint


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last message of the relay's own found in a stream."""

    position: int  # 0: the stream holds none of the log's events
    seq: int
    known: bool  # False: only foreign messages within TAIL_SCAN_MSGS_MAX of the end

    @classmethod
    def unknown(cls) -> StreamEnd:
        return cls(position=0, seq=0, known=False)


def resume_position(checkpoint: int, held: Held, evt_end: StreamEnd) -> int:
    """Where the relay resumes: its checkpoint, unless the event stream lost messages.

    A stream that holds the checkpoint's message lost nothing the relay would re-publish,
    whatever else is in it. Without that proof the relay rewinds to its own last message in the
    stream, if that is below the checkpoint; where that is unknown (only foreign messages at
    the end) it rewinds to the start if the loss is proven, and otherwise keeps its
    checkpoint: it does not rewind on what it cannot check."""
    if held is Held.YES:
        return checkpoint
    if not evt_end.known:
        return 0 if held is Held.NO else checkpoint
    return min(checkpoint, evt_end.position)


def maybe_published_through(evt_end: StreamEnd, dispatch_end: StreamEnd, head: int) -> int:
    """Positions that may be in JetStream already. Where a stream's end is unknown, everything
    committed may be: unfenced publishes only cost the fence, while fencing a message already
    stored would be refused on every attempt (ADR 0013)."""
    if not (evt_end.known and dispatch_end.known):
        return head
    return max(evt_end.position, dispatch_end.position)


class _Stamp(msgspec.Struct):
    """The fields of a published event that tie it to the log."""

    position: int
    event_id: str
    hash: str


_decode_stamp = msgspec.json.Decoder(_Stamp)
