"""The policy port as the aggregate sees it: a pure judgement over one intent.

The aggregate only ever sees a ``PolicyVerdict``. ``PolicyEngine`` (``engine.py``) is the
implementation driven by a versioned policy document; ``AllowAllPolicy`` is version 0.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from schemas.commands import SubmitPaymentIntent
from schemas.events import RuleFired, Tier


class PolicyVerdict(msgspec.Struct, frozen=True, kw_only=True):
    tier: Tier
    policy_version: int
    explanation: tuple[RuleFired, ...] = ()
    reject_reason: str | None = None
    approval_window_ms: int | None = None


class Policy(Protocol):
    def judge(
        self, command: SubmitPaymentIntent, *, now_ms: int, payee: str | None = None
    ) -> PolicyVerdict:
        """``payee`` is the decoded invoice's payee pubkey (screening needs it)."""
        ...


class AllowAllPolicy:
    """Version 0: every intent runs in tier ``auto``. Used until a policy document is loaded."""

    version = 0

    def judge(
        self, command: SubmitPaymentIntent, *, now_ms: int, payee: str | None = None
    ) -> PolicyVerdict:
        return PolicyVerdict(
            tier="auto",
            policy_version=self.version,
            explanation=(RuleFired(rule="default.allow_all", effect="auto"),),
        )
