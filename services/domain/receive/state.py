"""The state of one receive intent, folded from its events."""

from __future__ import annotations

import msgspec

from schemas.common import Caller
from services.domain.receive.status import ReceiveStatus
from services.domain.receive.transitions import FINAL_STATUSES, TERMINAL_STATUSES


class ReceiveIntent(msgspec.Struct, frozen=True, kw_only=True):
    intent_id: str
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    amount_msat: int
    memo: str
    expiry_s: int
    region: str | None
    corridor: str | None
    status: ReceiveStatus
    version: int
    received_at_ms: int
    node: str | None = None
    node_region: str | None = None
    payment_hash: str | None = None
    payment_request: str | None = None
    expires_at_s: int | None = None
    amount_received_msat: int = 0
    preimage: str | None = None
    pay_index: int | None = None
    paid_late: bool = False
    reason: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES
