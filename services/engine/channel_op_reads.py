"""``intents get`` and ``intents status`` of a channel operation (ADR 0234), read from the
log with the payment's replies, so ``corridor get`` shows either (``stream_reads``)."""

from __future__ import annotations

from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView
from services.domain.channel_ops import ChannelOp, replay
from services.domain.principal import Principal
from services.engine.stream_reads import StreamKind, stream_status, stream_view
from services.eventstore.port import EventStore


def may_read_channel_op(reader: Principal | None, state: ChannelOp, history: bool) -> bool:
    """Operators, auditors and the engine read every operation; the executor of its node the
    status only; callers none (our own nodes' channels are not theirs to see)."""
    if reader is None:
        return True
    match reader.role:
        case "engine" | "operator" | "auditor":
            return True
        case "executor":
            return not history and reader.id == state.node
    return False


CHANNEL_OPS: StreamKind[ChannelOp] = StreamKind(
    noun="channel operation",
    fold=replay,
    may_read=may_read_channel_op,
    status=lambda state: str(state.status),
    version=lambda state: state.version,
    reason=lambda state: state.rejection,
)


async def channel_op_view(
    store: EventStore, op_id: str, reader: Principal | None
) -> PaymentIntentView | CommandRejected:
    return await stream_view(store, CHANNEL_OPS, op_id, reader)


async def channel_op_status(
    store: EventStore, op_id: str, reader: Principal | None
) -> PaymentIntentStatus | CommandRejected:
    return await stream_status(store, CHANNEL_OPS, op_id, reader)
