"""The state of one channel operation, and its transition table (one source for both)."""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from schemas.channel_messages import ChannelOpenRequested, ChannelOpKind, ChannelTier
from schemas.common import Caller


class ChannelOpStatus(enum.StrEnum):
    REQUESTED = "requested"  # accepted; waits for its executor (or an approval, tier approval)
    BROADCAST = "broadcast"  # the funding or closing transaction is on the network
    COMPLETED = "completed"  # opened after its confirmations, or closed and confirmed
    REJECTED = "rejected"  # refused by the channel policy; nothing was sent


_S = ChannelOpStatus
# (status before, event type) -> status after. Anything else is refused by ``evolve``.
TRANSITIONS: Final[dict[tuple[ChannelOpStatus | None, str], ChannelOpStatus]] = {
    (None, "ChannelOpenRequested"): _S.REQUESTED,
    (None, "ChannelCloseRequested"): _S.REQUESTED,
    (None, "ChannelOpRejected"): _S.REJECTED,
    (_S.REQUESTED, "ChannelOpenApproved"): _S.REQUESTED,  # now the executor may open it
    (_S.REQUESTED, "ChannelOpDeclined"): _S.REJECTED,
    (_S.REQUESTED, "ChannelOpening"): _S.BROADCAST,
    (_S.REQUESTED, "ChannelClosing"): _S.BROADCAST,
    (_S.BROADCAST, "ChannelOpened"): _S.COMPLETED,
    (_S.BROADCAST, "ChannelClosed"): _S.COMPLETED,
}


class ChannelOp(msgspec.Struct, frozen=True, kw_only=True):
    op_id: str
    kind: ChannelOpKind
    status: ChannelOpStatus
    version: int
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    region: str | None = None
    node: str | None = None
    tier: ChannelTier | None = None
    peer_pubkey: str | None = None
    local_amount_msat: int | None = None
    onchain_fee_msat: int = 0
    channel_point: str | None = None  # the funding outpoint (known at request for a close)
    txid: str | None = None  # funding (open) or closing (close) transaction
    channel_id: str | None = None
    rejection: str | None = None
    # The budget stream its fee is reserved on until it completes (ADR 0285).
    budget_stream: str | None = None
    approved_by: str | None = None  # tier approval: the operator who released it (ADR 0236)
    # Tier approval only: the request as judged, repeated by the approval as the order.
    open_request: ChannelOpenRequested | None = None
