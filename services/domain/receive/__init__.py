"""The receive intent aggregate (issue 18, ADR 0220): pure decide and evolve."""

from services.domain.receive.decide import ReceiveContext, decide
from services.domain.receive.evolve import ReceiveTransitionError, evolve, fold
from services.domain.receive.state import ReceiveIntent
from services.domain.receive.status import ReceiveStatus
from services.domain.receive.transitions import FINAL_STATUSES, TERMINAL_STATUSES, TRANSITIONS

__all__ = [
    "FINAL_STATUSES",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "ReceiveContext",
    "ReceiveIntent",
    "ReceiveStatus",
    "ReceiveTransitionError",
    "decide",
    "evolve",
    "fold",
]
