"""``intents get`` and ``intents status`` of a receive intent (ADR 0220), read from the log:
the same replies as a payment's, so ``corridor get`` shows either."""

from __future__ import annotations

from schemas import errors
from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView
from services.domain.principal import Principal
from services.domain.receive import ReceiveIntent, fold
from services.engine.commands import rejected
from services.engine.event_codec import to_domain, to_recorded
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


async def receive_view(
    store: EventStore, intent_id: str, reader: Principal | None
) -> PaymentIntentView | CommandRejected:
    history = await store.read_stream(intent_id)
    state = fold(to_domain(e) for e in history)
    if state is None or not may_read_receive(reader, state, history=True):
        return _not_found(intent_id)
    return PaymentIntentView(
        intent_id=intent_id, state=str(state.status), stream_version=state.version,
        events=[to_recorded(e) for e in history], reason=state.reason,
    )  # fmt: skip


async def receive_status(
    store: EventStore, intent_id: str, reader: Principal | None
) -> PaymentIntentStatus | CommandRejected:
    history = await store.read_stream(intent_id)
    state = fold(to_domain(e) for e in history)
    if state is None or not may_read_receive(reader, state, history=False):
        return _not_found(intent_id)
    return PaymentIntentStatus(
        intent_id=intent_id, state=str(state.status), attempt=0, stream_version=state.version
    )


def _not_found(intent_id: str) -> CommandRejected:
    return rejected(errors.NotFound(f"no receive intent {intent_id}", field="intent_id"))
