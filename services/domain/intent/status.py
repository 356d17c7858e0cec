"""The statuses a payment intent can be in. Which status follows which, and the sets that
group them, are in ``transitions.py``: the one source of the state machine."""

from __future__ import annotations

import enum


class IntentStatus(enum.StrEnum):
    RECEIVED = "received"
    POLICY_CHECKED = "policy_checked"
    AWAITING_APPROVAL = "awaiting_approval"
    ROUTED = "routed"
    DISPATCHED = "dispatched"
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SETTLED = "settled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"
