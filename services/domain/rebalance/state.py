"""The state of one rebalance, its statuses and its transition table (one source for all)."""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from schemas.common import Caller
from schemas.events import Tier
from schemas.rebalance_messages import RebalanceMode


class RebalanceStatus(enum.StrEnum):
    PROPOSED = "proposed"  # a dry run: recorded with its explanation, nothing more (final)
    # Requested; an ``approval`` move stays here, undispatched, until an operator approves.
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"  # an operator approved it; dispatched or rejected in the same batch
    REJECTED = "rejected"  # refused before anything was reserved or sent
    # The work order is out; the names are the payment's, so the executor's engine check
    # (``AttemptStatus``, ADR 0203) reads them as it reads a payment's.
    DISPATCHED = "dispatched"
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"  # paid: its fee is spent from the day's budget
    FAILED = "failed"  # the node's proof that it did not and cannot pay


_S = RebalanceStatus
# (status before, event type) -> status after. Anything else is refused by ``evolve``.
TRANSITIONS: Final[dict[tuple[RebalanceStatus | None, str], RebalanceStatus]] = {
    (None, "RebalanceProposed"): _S.PROPOSED,
    (None, "RebalanceRequested"): _S.AWAITING_APPROVAL,
    (_S.AWAITING_APPROVAL, "RebalanceRejected"): _S.REJECTED,
    (_S.AWAITING_APPROVAL, "RebalanceDispatched"): _S.DISPATCHED,
    (_S.AWAITING_APPROVAL, "RebalanceApproved"): _S.APPROVED,
    (_S.APPROVED, "RebalanceDispatched"): _S.DISPATCHED,
    (_S.APPROVED, "RebalanceRejected"): _S.REJECTED,
    (_S.DISPATCHED, "RebalanceInFlight"): _S.IN_FLIGHT,
    (_S.DISPATCHED, "RebalanceSucceeded"): _S.SUCCEEDED,
    (_S.DISPATCHED, "RebalanceFailed"): _S.FAILED,
    (_S.IN_FLIGHT, "RebalanceSucceeded"): _S.SUCCEEDED,
    (_S.IN_FLIGHT, "RebalanceFailed"): _S.FAILED,
}
FINAL_STATUSES: Final = frozenset({_S.PROPOSED, _S.REJECTED, _S.SUCCEEDED, _S.FAILED})
ON_THE_WIRE_STATUSES: Final = frozenset({_S.DISPATCHED, _S.IN_FLIGHT})
# Paid or proven unpaid: its budget reservation is released.
ENDED_STATUSES: Final = frozenset({_S.SUCCEEDED, _S.FAILED})


class Rebalance(msgspec.Struct, frozen=True, kw_only=True):
    rebalance_id: str
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    mode: RebalanceMode
    source_region: str
    source_node: str
    target_region: str
    target_node: str
    destination: str
    amount_msat: int
    max_fee_msat: int
    status: RebalanceStatus
    version: int
    tier: Tier | None = None  # None for a proposal
    budget_stream: str | None = None
    node: str | None = None  # the node the order went to
    node_region: str | None = None
    payment_hash: str | None = None
    fee_msat: int | None = None
    reason: str | None = None
    # What an approved order is built from (ADR 0247, 0248).
    outgoing_channel_id: str | None = None
    last_hop_pubkey: str | None = None
    payment_request: str | None = None
    invoice_payment_hash: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def attempt(self) -> int:
        """The executor's attempt number: 1 once dispatched (a rebalance is never re-routed)."""
        return 0 if self.node is None else 1
