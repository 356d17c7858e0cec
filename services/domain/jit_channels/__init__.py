"""Just-in-time channels sold over LSPS2 (bLIP-52): we are the LSP. Pure: no I/O (ADR 0261)."""

from services.domain.jit_channels.decide import (
    Decision,
    JitContext,
    JitPolicy,
    Refusal,
    decide,
)
from services.domain.jit_channels.evolve import TransitionRefused, evolve, replay
from services.domain.jit_channels.state import FINAL, TRANSITIONS, JitChannel, JitStatus

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "Decision",
    "JitChannel",
    "JitContext",
    "JitPolicy",
    "JitStatus",
    "Refusal",
    "TransitionRefused",
    "decide",
    "evolve",
    "replay",
]
