"""The state of one payment intent, rebuilt by folding its events."""

from __future__ import annotations

import msgspec

from schemas.common import Caller
from schemas.events import NodeFailure, RuleFired
from services.domain.intent.status import IntentStatus
from services.domain.intent.transitions import TERMINAL_STATUSES

__all__ = ["IntentStatus", "PaymentIntent", "effective_deadline"]


class PaymentIntent(msgspec.Struct, frozen=True, kw_only=True):
    intent_id: str
    status: IntentStatus
    version: int  # stream version of the last folded event
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    corridor: str
    amount_msat: int
    max_fee_msat: int
    payment_request: str | None
    destination: str | None
    payment_hash: str | None
    invoice_has_amount: bool | None
    received_at_ms: int
    deadline_at_ms: int | None
    tier: str | None = None
    policy_version: int | None = None
    approval_deadline_at_ms: int | None = None
    attempt: int = 0
    region: str | None = None
    node: str | None = None
    # (region, node) of every attempt so far, in order; each is excluded from re-routing.
    tried_nodes: tuple[tuple[str, str], ...] = ()
    in_doubt: bool = False
    preimage: str | None = None
    fee_msat: int | None = None
    failure_reason: str | None = None
    # Nodes that proved they did not pay, in attempt order; once failed, the intent's full list.
    failures: tuple[NodeFailure, ...] = ()
    # The policy's explanation while it still decides the intent's fate (rejected, or waiting
    # for an operator); dropped once the intent is released, so cached states stay small.
    explanation: tuple[RuleFired, ...] = ()
    ignored_outcomes: int = 0
    anomalies: int = 0
    # How many of ``anomalies`` an operator has acknowledged (``AnomalyAcknowledged``).
    anomalies_acknowledged: int = 0
    # The attempt an exception item (``IntentEscalated``) was raised for; 0: none.
    escalated_attempt: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def effective_deadline(state: PaymentIntent) -> int | None:
    """The earlier of the caller's deadline and the approval deadline (ms), if any: after it
    an intent before dispatch expires. The one definition, for decide and the scheduler."""
    deadlines = [d for d in (state.deadline_at_ms, state.approval_deadline_at_ms) if d is not None]
    return min(deadlines) if deadlines else None
