"""Rebalances as intents of their own kind (issue 18, ADR 0244): a pure aggregate in the style
of ``services/domain/receive``, with the day's fee budget per source region (ADR 0245)."""

from services.domain.rebalance.budget import DayBudget, evolve_budget, fold_budget
from services.domain.rebalance.decide import (
    Decided,
    RebalanceContext,
    RebalanceRules,
    budget_stream_for,
    decide,
)
from services.domain.rebalance.evolve import RebalanceTransitionError, evolve, fold
from services.domain.rebalance.state import (
    FINAL_STATUSES,
    ON_THE_WIRE_STATUSES,
    TRANSITIONS,
    Rebalance,
    RebalanceStatus,
)

__all__ = [
    "FINAL_STATUSES",
    "ON_THE_WIRE_STATUSES",
    "TRANSITIONS",
    "DayBudget",
    "Decided",
    "Rebalance",
    "RebalanceContext",
    "RebalanceRules",
    "RebalanceStatus",
    "RebalanceTransitionError",
    "budget_stream_for",
    "decide",
    "evolve",
    "evolve_budget",
    "fold",
    "fold_budget",
]
