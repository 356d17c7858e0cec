"""Channel operations (open, cooperative close) as intents of their own kind: a pure aggregate
in the style of ``services/domain/intent`` (ADR 0233)."""

from services.domain.channel_ops.decide import ChannelOpContext, ChannelPolicy, Refusal, decide
from services.domain.channel_ops.evolve import evolve, replay
from services.domain.channel_ops.state import ChannelOp, ChannelOpStatus

__all__ = [
    "ChannelOp",
    "ChannelOpContext",
    "ChannelOpStatus",
    "ChannelPolicy",
    "Refusal",
    "decide",
    "evolve",
    "replay",
]
