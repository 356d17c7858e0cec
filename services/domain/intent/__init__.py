"""The PaymentIntent aggregate: pure ``decide`` and ``evolve``, no I/O, no clock, no randomness."""

from services.domain.intent.context import DecisionContext
from services.domain.intent.decide import decide
from services.domain.intent.evolve import evolve, fold
from services.domain.intent.state import IntentStatus, PaymentIntent
from services.domain.intent.transitions import TERMINAL_STATUSES

__all__ = [
    "TERMINAL_STATUSES",
    "DecisionContext",
    "IntentStatus",
    "PaymentIntent",
    "decide",
    "evolve",
    "fold",
]
