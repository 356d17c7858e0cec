"""The dead-letter desk: ``corridor dlq list|replay|drop``, answered by the engine (ADR 0080).

Requests arrive on ``corridor.api.v1.dlq.<verb>.<operator_id>``; nats-server lets only that
operator's credential publish there (ADR 0060/0061), and the registry must hold it live. The
engine acts because only it may publish commands under any caller's subject and work orders on
``CORRIDOR_DISPATCH``: an operator's credential gets no write to those streams.

Each replay or drop is appended to the log (stream ``dead-letters``) before it is carried out,
naming the operator and the reason: a record without its effect is possible (the bus went away
in between; the operator sees the failure and tries again, recorded again), an effect without
its record is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any, Final

import msgspec
import structlog

from schemas import errors
from schemas.codec import encode, schema_error
from schemas.dead_letters import (
    DLQ_ERROR_CHARS_MAX,
    DeadLetterActionDone,
    DeadLetterDropped,
    DeadLetterEntry,
    DeadLetterList,
    DeadLetterReplayed,
    DeadLetterRequest,
    DeadLetterResult,
    DropDeadLetters,
    ListDeadLetters,
    ReplayDeadLetters,
)
from schemas.events import EventData
from schemas.limits import COMMAND_BYTES_MAX
from schemas.records import EventMetadata
from schemas.replies import CommandRejected
from services.bus import subjects
from services.bus.port import Bus, Message, NotFound, StoredMessage, Subscription
from services.engine.clock import Clock
from services.engine.committed import CommittedBatch, CommittedBatches, Writer
from services.engine.event_codec import to_new_events
from services.eventstore.port import ConcurrencyConflict, EventStore
from services.intake.identity import Authenticator

log = structlog.get_logger("corridor.dlq")

DEAD_LETTER_STREAM_ID: Final = "dead-letters"
API_PREFIX: Final = subjects.DLQ_API_PREFIX
API_WILDCARD: Final = f"{API_PREFIX}.>"
VERBS: Final = {"list": ListDeadLetters, "replay": ReplayDeadLetters, "drop": DropDeadLetters}
# Appends lost to another engine's audit record: re-read the version and try again.
APPEND_TRIES_MAX: Final = 5
# One publish or delete waits this long for JetStream.
BUS_TIMEOUT_S: Final = 5.0
# Headers a dead letter got when it was dead-lettered; dropped again when it is replayed.
_DLQ_HEADERS: Final = frozenset(
    {
        subjects.HDR_ERROR_CODE,
        subjects.HDR_ERROR_FIELD,
        subjects.HDR_ERROR_MESSAGE,
        subjects.HDR_ORIGINAL_SUBJECT,
        subjects.HDR_MSG_ID,
    }
)
_decoder = msgspec.json.Decoder(DeadLetterRequest)


class DeadLetterDesk:
    def __init__(
        self,
        bus: Bus,
        store: EventStore,
        authenticator: Authenticator,
        clock: Clock,
        committed: CommittedBatches | None = None,
    ) -> None:
        self._bus, self._store = bus, store
        self._auth = authenticator
        self._clock = clock
        self._version: int | None = None
        self._lock = asyncio.Lock()  # one audit append at a time from this engine
        self._sub: Subscription | None = None
        # The audit events it appends are published here (for the relay, ADR 0095).
        self._committed = committed if committed is not None else CommittedBatches()

    async def start(self) -> None:
        # Live on the server when this returns (the port's subscribe round-trips).
        self._sub = await self._bus.subscribe(
            API_WILDCARD, self._on_message, queue=subjects.INTAKE_QUEUE_GROUP
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_message(self, msg: Message) -> None:
        if not msg.reply:
            return
        try:
            reply: Any = await self.handle(msg.subject, msg.data)
        except errors.CorridorError as exc:
            reply = CommandRejected(error=exc.detail())
        except Exception:
            log.exception("dlq_request_failed", subject=msg.subject)
            reply = CommandRejected(error=errors.Unavailable("try again").detail())
        with contextlib.suppress(Exception):
            await msg.respond(encode(reply))

    async def handle(self, subject: str, data: bytes) -> DeadLetterList | DeadLetterActionDone:
        verb, operator = _parse_subject(subject)
        # A live operator credential of that id (ADR 0061); the token is the identity.
        self._auth.reader("operator", operator, history=False)
        request = _decode(data)
        if not isinstance(request, VERBS[verb]):
            raise errors.SchemaViolation(
                f"{verb} takes {VERBS[verb].__name__}, not {type(request).__name__}", field="type"
            )
        match request:
            case ListDeadLetters():
                return await self.list(request)
            case ReplayDeadLetters():
                return await self._act("replay", operator, request.sequences, request.reason)
            case DropDeadLetters():
                return await self._act("drop", operator, request.sequences, request.reason)
        raise AssertionError("unreachable")

    async def list(self, request: ListDeadLetters) -> DeadLetterList:
        state = await self._bus.stream_state(subjects.DLQ_STREAM)
        entries: list[DeadLetterEntry] = []
        seq = max(request.from_sequence, state.first_seq or 1)
        last = state.last_seq
        while seq <= last and len(entries) < request.limit:
            try:
                raw = await self._bus.get_message(
                    subjects.DLQ_STREAM, seq, next_on=subjects.DLQ_WILDCARD
                )
            except NotFound:
                break
            entries.append(_entry(raw))
            seq = raw.seq + 1
        more = seq <= last and len(entries) == request.limit
        return DeadLetterList(
            entries=tuple(entries),
            next_sequence=seq if more else None,
            messages=state.messages,
        )

    async def _act(
        self, action: str, operator: str, sequences: Sequence[int], reason: str
    ) -> DeadLetterActionDone:
        results = []
        for seq in dict.fromkeys(sequences):  # each once, in the order given
            results.append(await self._one(action, operator, seq, reason))
        return DeadLetterActionDone(
            action="replay" if action == "replay" else "drop",
            operator_id=operator,
            results=tuple(results),
        )

    async def _one(self, action: str, operator: str, seq: int, reason: str) -> DeadLetterResult:
        try:
            raw = await self._bus.get_message(subjects.DLQ_STREAM, seq)
        except NotFound:
            return DeadLetterResult(sequence=seq, outcome="not_found")
        headers = raw.headers
        original = headers.get(subjects.HDR_ORIGINAL_SUBJECT)
        code = headers.get(subjects.HDR_ERROR_CODE)
        if action == "drop":
            await self._audit(
                DeadLetterDropped(operator_id=operator, reason=reason, sequence=seq,
                                  original_subject=original, error_code=code), operator, seq,
            )  # fmt: skip
            await self._bus.delete_message(subjects.DLQ_STREAM, seq)
            log.info("dead_letter_dropped", sequence=seq, operator_id=operator)
            return DeadLetterResult(sequence=seq, outcome="dropped")
        target = _replay_target(original)
        if target is None or not raw.data:
            return DeadLetterResult(
                sequence=seq,
                outcome="not_replayable",
                detail="no command or work order to put back (an oversized order is not copied)"
                if target is not None
                else f"from {original!r}, not a command or work order subject",
            )
        await self._audit(
            DeadLetterReplayed(operator_id=operator, reason=reason, sequence=seq,
                               original_subject=original or "", error_code=code,
                               replayed_to=target), operator, seq,
        )  # fmt: skip
        kept = {k: v for k, v in headers.items() if k not in _DLQ_HEADERS}
        # A fresh message id: the original's may still be inside the duplicate window, where
        # JetStream would take the replay for a duplicate and drop it. Per sequence, so a
        # replay retried after a lost reply is published once.
        kept[subjects.HDR_MSG_ID] = f"dlq-replay-{seq}"
        if target.startswith(subjects.DISPATCH_PREFIX):
            # The executor must ask the engine before it sends (the order may be stale).
            kept[subjects.HDR_REPLAYED] = "true"
        await self._bus.publish(target, raw.data, headers=kept, timeout_s=BUS_TIMEOUT_S)
        await self._bus.delete_message(subjects.DLQ_STREAM, seq)
        log.info("dead_letter_replayed", sequence=seq, operator_id=operator, to=target)
        return DeadLetterResult(sequence=seq, outcome="replayed")

    async def _audit(self, event: EventData, operator: str, seq: int) -> None:
        meta = EventMetadata(
            correlation_id=f"dlq-{seq}",
            causation_id=str(uuid.uuid4()),
            actor=f"operator:{operator}",
        )
        async with self._lock:
            for _ in range(APPEND_TRIES_MAX):
                if self._version is None:
                    self._version = await self._stream_version()
                events = to_new_events(
                    DEAD_LETTER_STREAM_ID, self._version + 1, [event], meta, self._clock.now_ms()
                )
                try:
                    first = await self._store.append(events)
                except ConcurrencyConflict:
                    self._version = None  # another engine recorded one: read again
                    continue
                self._version += 1
                assert first is not None
                self._committed.publish(CommittedBatch(Writer.DEAD_LETTERS, first, events))
                return
        raise errors.Unavailable("the audit record could not be appended; nothing was done")

    async def _stream_version(self) -> int:
        return await self._store.stream_version(DEAD_LETTER_STREAM_ID)


def _parse_subject(subject: str) -> tuple[str, str]:
    rest = subject.removeprefix(API_PREFIX + ".")
    verb, _, operator = rest.partition(".")
    if verb not in VERBS or not operator or "." in operator:
        raise errors.CorridorError(
            f"dead-letter subjects are {API_PREFIX}.<{'|'.join(VERBS)}>.<operator_id>",
            field="subject",
            code="bad_subject",
        )
    return verb, operator


def _decode(data: bytes) -> DeadLetterRequest:
    if len(data) > COMMAND_BYTES_MAX:
        raise errors.PayloadTooLarge(f"message is {len(data)} bytes, limit is {COMMAND_BYTES_MAX}")
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise schema_error(exc) from None
    except msgspec.DecodeError as exc:
        raise errors.MalformedJson(f"malformed JSON: {exc}") from None


def _replay_target(original: str | None) -> str | None:
    """Where a dead letter goes back to: its command or work order subject, nothing else."""
    if original is None:
        return None
    if original.startswith("corridor.cmd.v1.") or original.startswith(
        subjects.DISPATCH_PREFIX + "."
    ):
        return original
    return None


def _entry(raw: StoredMessage) -> DeadLetterEntry:
    headers = raw.headers

    def cut(name: str) -> str | None:
        value = headers.get(name)
        return None if value is None else str(value)[:DLQ_ERROR_CHARS_MAX]

    return DeadLetterEntry(
        sequence=raw.seq,
        subject=raw.subject,
        original_subject=cut(subjects.HDR_ORIGINAL_SUBJECT),
        error_code=cut(subjects.HDR_ERROR_CODE),
        error_field=cut(subjects.HDR_ERROR_FIELD),
        error_message=cut(subjects.HDR_ERROR_MESSAGE),
        stored_at=raw.stored_at.isoformat() if raw.stored_at else None,
        bytes=len(raw.data),
    )
