"""``intents get`` and ``intents status`` of a receive intent (ADR 0220), read from the log:
the same replies as a payment's, so ``corridor get`` shows either (``stream_reads``)."""

from __future__ import annotations

from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView
from services.domain.principal import Principal
from services.domain.receive import ReceiveIntent, fold
from services.engine.stream_reads import StreamKind, stream_status, stream_view
from services.eventstore.port import EventStore


def may_read_receive(reader: Principal | None, state: ReceiveIntent, *, history: bool) -> bool:
    """As ``may_read`` for payments: the owner, operators, auditors; the executor of its node
    the status only."""
    if reader is None:
        return True
    match reader.role:
        case "engine" | "operator" | "auditor":
            return True
        case "caller" | "agent":
            return reader.id == state.caller.id
        case "executor":
            return not history and reader.id == state.node
    return False


RECEIVES: StreamKind[ReceiveIntent] = StreamKind(
    noun="receive intent",
    fold=fold,
    may_read=lambda reader, state, history: may_read_receive(reader, state, history=history),
    status=lambda state: str(state.status),
    version=lambda state: state.version,
    reason=lambda state: state.reason,
)


async def receive_view(
    store: EventStore, intent_id: str, reader: Principal | None
) -> PaymentIntentView | CommandRejected:
    return await stream_view(store, RECEIVES, intent_id, reader)


async def receive_status(
    store: EventStore, intent_id: str, reader: Principal | None
) -> PaymentIntentStatus | CommandRejected:
    return await stream_status(store, RECEIVES, intent_id, reader)
