"""A channel operation (ADR 0234) as a kind of ``stream_reads``: who may read it and what its
status is, so ``intents get`` and ``intents status`` answer it with the payment's replies and
``corridor get`` shows either."""

from __future__ import annotations

from services.domain.channel_ops import ChannelOp, replay
from services.domain.principal import Principal
from services.engine.stream_reads import StreamKind


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
