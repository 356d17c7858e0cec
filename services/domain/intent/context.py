"""Everything ``decide`` needs from the outside world, passed in as plain data."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import InvoiceFacts
from services.domain.policy import Policy
from services.domain.routing import Router


@dataclass(frozen=True, kw_only=True, slots=True)
class DecisionContext:
    now_ms: int
    policy: Policy
    router: Router
    network: str = "regtest"
    # For SubmitPaymentIntent: derived from (caller id, idempotency key) by the service layer.
    intent_id: str | None = None
    request_fingerprint: str | None = None
    invoice: InvoiceFacts | None = None
    # Bounds the re-route budget: first attempt plus at most two fallbacks.
    attempts_max: int = 3
    pay_timeout_s: int = 60
    # An agent's submit: the key that signed it and that key's sponsor (ADR 0068).
    agent_key_id: str | None = None
    on_behalf_of: str | None = None
