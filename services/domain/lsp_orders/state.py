"""The state of one LSP order, and its transition table (one source for both)."""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from schemas.common import Caller


class LspOrderStatus(enum.StrEnum):
    REQUESTED = "requested"  # waits for its executor to ask the LSP
    PAYING = "paying"  # the LSP quoted within budget; its invoice is being paid (one intent)
    PAID = "paid"  # our payment succeeded; the LSP is to publish the channel
    COMPLETED = "completed"  # terminal: the channel's funding transaction is published
    REFUSED = "refused"  # terminal: the LSP refused the order
    REJECTED = "rejected"  # terminal: our rules refused it; nothing was sent
    ABANDONED = "abandoned"  # terminal: the LSP's quote broke our checks; nothing was paid
    FAILED = "failed"  # terminal: the LSP failed it, never answered, or it expired unpaid


TERMINAL: Final = frozenset(
    {
        LspOrderStatus.COMPLETED,
        LspOrderStatus.REFUSED,
        LspOrderStatus.REJECTED,
        LspOrderStatus.ABANDONED,
        LspOrderStatus.FAILED,
    }
)

_S = LspOrderStatus
# (status before, event type) -> status after. Anything else is refused by ``evolve``.
TRANSITIONS: Final[dict[tuple[LspOrderStatus | None, str], LspOrderStatus]] = {
    (None, "LspOrderRequested"): _S.REQUESTED,
    (None, "LspOrderRejected"): _S.REJECTED,
    (_S.REQUESTED, "LspOrderCreated"): _S.REQUESTED,  # always followed by one of the next two
    (_S.REQUESTED, "LspOrderPaymentRequested"): _S.PAYING,
    (_S.REQUESTED, "LspOrderAbandoned"): _S.ABANDONED,
    (_S.REQUESTED, "LspOrderRefused"): _S.REFUSED,
    (_S.REQUESTED, "LspOrderFailed"): _S.FAILED,
    (_S.PAYING, "LspOrderPaid"): _S.PAID,
    (_S.PAYING, "LspOrderCompleted"): _S.COMPLETED,  # the LSP was quicker than our report
    (_S.PAYING, "LspOrderFailed"): _S.FAILED,
    (_S.PAID, "LspOrderCompleted"): _S.COMPLETED,
    (_S.PAID, "LspOrderFailed"): _S.FAILED,
}


class LspOrder(msgspec.Struct, frozen=True, kw_only=True):
    lsp_order_id: str
    status: LspOrderStatus
    version: int
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    region: str | None = None
    node: str | None = None
    lsp_pubkey: str | None = None
    lsp_balance_msat: int = 0
    client_balance_msat: int = 0
    max_fee_msat: int = 0
    max_routing_fee_msat: int = 0
    answer_deadline_ms: int = 0
    corridor: str = ""  # the corridor whose intent pays the invoice (ADR 0252)
    remote_order_id: str | None = None
    invoice: str | None = None
    fee_total_msat: int | None = None
    order_total_msat: int | None = None
    expires_at_s: int | None = None
    payment_key: str | None = None
    payment_intent_id: str | None = None
    funding_outpoint: str | None = None
    outcome: str | None = None  # the reason or code of a terminal state other than completed

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL
