"""A receive intent (ADR 0220) as a kind of ``stream_reads``: who may read it and what its
status is, so ``intents get`` and ``intents status`` answer it with the payment's replies and
``corridor get`` shows either."""

from __future__ import annotations

from services.domain.principal import Principal
from services.domain.receive import ReceiveIntent, fold
from services.engine.stream_reads import StreamKind


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
