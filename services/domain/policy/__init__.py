"""Policy: pure judgement of payment intents against a versioned policy document.

``PolicyVerdict``, ``Policy`` and ``AllowAllPolicy`` are the port the intent aggregate uses;
``PolicyEngine`` implements it from a ``PolicyDocument`` and a ``SpendLedger`` snapshot. The
document changes only through ``PolicyDocumentAggregate`` (proposal, then a second person's
approval). No I/O, no clock, no randomness: time arrives as ``now_ms``.
"""

from schemas.policy_document import PolicyDocument
from schemas.policy_messages import (
    ApprovePolicy,
    PolicyActivated,
    PolicyProposed,
    ProposePolicy,
)
from services.domain.policy.aggregate import PolicyDocumentAggregate
from services.domain.policy.aggregate import decide as decide_policy
from services.domain.policy.aggregate import evolve as evolve_policy
from services.domain.policy.aggregate import fold as fold_policy
from services.domain.policy.engine import PolicyEngine, judge
from services.domain.policy.port import AllowAllPolicy, Policy, PolicyVerdict
from services.domain.policy.spend import SpendLedger, WindowLimit
from services.domain.policy.spend_fold import SpendBook, apply_intent_event, fold_intent_events

__all__ = [
    "AllowAllPolicy",
    "ApprovePolicy",
    "Policy",
    "PolicyActivated",
    "PolicyDocument",
    "PolicyDocumentAggregate",
    "PolicyEngine",
    "PolicyProposed",
    "PolicyVerdict",
    "ProposePolicy",
    "SpendBook",
    "SpendLedger",
    "WindowLimit",
    "apply_intent_event",
    "decide_policy",
    "evolve_policy",
    "fold_intent_events",
    "fold_policy",
    "judge",
]
