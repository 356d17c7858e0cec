"""The per-caller budget of policy-rejected submits (ADR 0079; issue 13, finding 7)."""

from __future__ import annotations

from services.engine.rejection_budget import RejectionBudget


def test_a_caller_gets_a_burst_then_the_rate_and_others_are_untouched() -> None:
    budget = RejectionBudget(per_minute=3)
    for _ in range(3):
        assert budget.allows("mallory", 0)
        budget.charge("mallory", 0)
    assert not budget.allows("mallory", 0)
    assert not budget.allows("mallory", 19_999)  # a third of a token short of one
    assert budget.allows("mallory", 20_000)  # one rejection per 20 s refills
    assert budget.allows("alice", 0)  # another caller's budget is its own


def test_memory_is_bounded_and_forgetting_only_refills() -> None:
    budget = RejectionBudget(per_minute=1, callers_max=2)
    for caller in ("a", "b", "c"):
        budget.charge(caller, 0)
    assert not budget.allows("b", 0) and not budget.allows("c", 0)
    assert budget.allows("a", 0)  # forgotten first: a full bucket again
