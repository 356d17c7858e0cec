"""``intents get`` and ``intents status`` of a channel operation (ADR 0234), read from the
log: the same replies as a payment's, so ``corridor get`` shows either."""

from __future__ import annotations

from schemas import errors
from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView
from services.domain.channel_ops import ChannelOp, replay
from services.domain.principal import Principal
from services.engine.commands import rejected
from services.engine.event_codec import to_domain, to_recorded
from services.eventstore.port import EventStore


def may_read_channel_op(reader: Principal | None, state: ChannelOp, *, history: bool) -> bool:
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


async def channel_op_view(
    store: EventStore, op_id: str, reader: Principal | None
) -> PaymentIntentView | CommandRejected:
    history = await store.read_stream(op_id)
    state = replay(to_domain(e) for e in history)
    if state is None or not may_read_channel_op(reader, state, history=True):
        return _not_found(op_id)
    return PaymentIntentView(
        intent_id=op_id, state=str(state.status), stream_version=state.version,
        events=[to_recorded(e) for e in history], reason=state.rejection,
    )  # fmt: skip


async def channel_op_status(
    store: EventStore, op_id: str, reader: Principal | None
) -> PaymentIntentStatus | CommandRejected:
    history = await store.read_stream(op_id)
    state = replay(to_domain(e) for e in history)
    if state is None or not may_read_channel_op(reader, state, history=False):
        return _not_found(op_id)
    return PaymentIntentStatus(
        intent_id=op_id, state=str(state.status), attempt=0, stream_version=state.version
    )


def _not_found(op_id: str) -> CommandRejected:
    return rejected(errors.NotFound(f"no channel operation {op_id}", field="intent_id"))
