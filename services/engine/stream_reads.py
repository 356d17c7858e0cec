"""``intents get`` and ``intents status`` of the kinds that live on streams of their own
(receives, rebalances, channel operations), read from the log and answered with the
payment's replies, so ``corridor get`` shows any of them. Each kind says how to fold its
stream, who may read it, and what its status is; this module does the rest once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from schemas import errors
from schemas.events import EventData
from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView
from services.domain.principal import Principal
from services.engine.commands import rejected
from services.engine.event_codec import to_domain, to_recorded
from services.eventstore.port import EventStore

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class StreamKind(Generic[S]):
    noun: str  # for "no <noun> <id>"
    fold: Callable[[Iterable[EventData]], S | None]
    # (reader, state, history): whether the reader may see it; ``None`` reader is the engine.
    may_read: Callable[[Principal | None, S, bool], bool]
    status: Callable[[S], str]
    version: Callable[[S], int]
    reason: Callable[[S], str | None] = lambda _: None
    attempt: Callable[[S], int] = lambda _: 0


async def stream_view(
    store: EventStore, kind: StreamKind[S], stream_id: str, reader: Principal | None
) -> PaymentIntentView | CommandRejected:
    history = await store.read_stream(stream_id)
    state = kind.fold(to_domain(e) for e in history)
    if state is None or not kind.may_read(reader, state, True):
        return not_found(kind, stream_id)
    return PaymentIntentView(
        intent_id=stream_id, state=kind.status(state), stream_version=kind.version(state),
        events=[to_recorded(e) for e in history], reason=kind.reason(state),
    )  # fmt: skip


async def stream_status(
    store: EventStore, kind: StreamKind[S], stream_id: str, reader: Principal | None
) -> PaymentIntentStatus | CommandRejected:
    history = await store.read_stream(stream_id)
    state = kind.fold(to_domain(e) for e in history)
    if state is None or not kind.may_read(reader, state, False):
        return not_found(kind, stream_id)
    return PaymentIntentStatus(
        intent_id=stream_id, state=kind.status(state), attempt=kind.attempt(state),
        stream_version=kind.version(state),
    )  # fmt: skip


def not_found(kind: StreamKind[S], stream_id: str) -> CommandRejected:
    return rejected(errors.NotFound(f"no {kind.noun} {stream_id}", field="intent_id"))
