"""Commands and events of channel operations as intents of their own kind (issue 18, ADR 0233).

An operator (or the liquidity planner) asks for a channel open or a cooperative close on one
of our nodes; the aggregate (``services/domain/channel_ops``) records the request, checks it
against the channel policy (tier, on-chain fee budget) and follows what the executor reports:
the funding transaction broadcast, the channel opened after its confirmations, the close.
Amounts are msat like everywhere; on-chain amounts must be whole satoshis.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas import limits
from schemas.common import Caller, Message, NodePubkey, PositiveAmountMsat, Region
from schemas.events import EventData

# A fee rate above this is a unit mistake (sat/kvB given as sat/vB), not a choice.
SAT_PER_VBYTE_MAX: Final = 10_000
# "txid:index": 64 hex digits, a colon, an output index.
CHANNEL_POINT_PATTERN: Final = r"^[0-9a-f]{64}:[0-9]{1,5}$"
TXID_PATTERN: Final = limits.HEX32_PATTERN
# A channel operation's stream: this prefix and a UUID of (operator, key) (ADR 0234).
CHANNEL_OP_STREAM_PREFIX: Final = "chop-"
# The requests that are also the executor's work orders on the dispatch stream (ADR 0234).
CHANNEL_ORDER_EVENTS: Final = frozenset(
    {"ChannelOpenRequested", "ChannelCloseRequested", "ChannelOpenApproved"}
)
# Our node names (executor targets): short, like region names.
NODE_NAME_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"

IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.IDEMPOTENCY_KEY_CHARS_MAX)
]
NodeName = Annotated[str, msgspec.Meta(pattern=NODE_NAME_PATTERN)]
ChannelPoint = Annotated[str, msgspec.Meta(pattern=CHANNEL_POINT_PATTERN)]
Txid = Annotated[str, msgspec.Meta(pattern=TXID_PATTERN)]
FeeRate = Annotated[int, msgspec.Meta(ge=1, le=SAT_PER_VBYTE_MAX)]
FeeMsat = Annotated[int, msgspec.Meta(ge=0, le=limits.AMOUNT_MSAT_MAX)]
ChannelOpKind = Literal["open", "close"]
ChannelTier = Literal["auto", "approval"]
RejectReason = Literal["not_whole_sats", "fee_over_budget", "amount_over_limit"]
# Virtual sizes the on-chain fee is judged by (ADR 0230): a funding transaction with one
# P2WPKH input, the P2WSH funding output and change; a cooperative close of a 2-of-2 to two
# P2WPKH outputs. The simulator charges exactly these.
FUNDING_TX_VSIZE: Final = 153
CLOSING_TX_VSIZE: Final = 169


class _ChannelRequest(Message, frozen=True, kw_only=True):
    """What an open and a close both ask: where, at which fee rate, within which fee."""

    version: Literal[1] = 1
    idempotency_key: IdempotencyKey
    region: Region
    node: NodeName
    sat_per_vbyte: FeeRate
    # The most this operation may spend on its transaction's fee.
    max_onchain_fee_msat: FeeMsat


class OpenChannel(_ChannelRequest, frozen=True, kw_only=True):
    peer_pubkey: NodePubkey
    local_amount_msat: PositiveAmountMsat
    push_msat: FeeMsat = 0


class CloseChannel(_ChannelRequest, frozen=True, kw_only=True):
    channel_point: ChannelPoint


class RecordChannelOpReport(Message, frozen=True, kw_only=True):
    """What the executor saw on the node: broadcast (``funding_txid``/``closing_txid``), then
    final (opened after its confirmations, or closed)."""

    version: Literal[1] = 1

    op_id: str
    stage: Literal["broadcast", "final"]
    channel_point: ChannelPoint | None = None
    txid: Txid | None = None
    channel_id: str | None = None


class _ChannelRequested(EventData, frozen=True, kw_only=True):
    """What an open's and a close's request events both record: who asked, the judged fee and
    tier, and the engine's signature over the order (ADR 0234: the event is the work order)."""

    op_id: str
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    region: str
    node: str
    sat_per_vbyte: int
    max_onchain_fee_msat: int
    # What the transaction costs at the rate (FUNDING_TX_VSIZE or CLOSING_TX_VSIZE): the budget
    # checked.
    onchain_fee_msat: int
    tier: ChannelTier
    key_id: str | None = None
    signature: str | None = None
    # The day's fee budget stream (``rblb-``) that holds this fee (ADR 0285); ``None``: nothing
    # reserved yet (an open waiting for approval) or recorded before budgets covered channels.
    budget_stream: str | None = None


class ChannelOpenRequested(_ChannelRequested, frozen=True, kw_only=True):
    peer_pubkey: str
    local_amount_msat: int
    push_msat: int


class ChannelCloseRequested(_ChannelRequested, frozen=True, kw_only=True):
    channel_point: str


class ChannelOpenApproved(ChannelOpenRequested, frozen=True, kw_only=True):
    """An operator other than the requester approved an open of tier ``approval`` (ADR 0236):
    the request again, signed for this event, is the executor's work order."""

    approved_by: str
    note: str = ""


class ChannelOpDeclined(EventData, frozen=True, kw_only=True):
    """An operator declined an open waiting for approval: nothing was sent."""

    op_id: str
    declined_by: str
    reason: str = ""


class ChannelOpRejected(EventData, frozen=True, kw_only=True):
    op_id: str
    kind: ChannelOpKind
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    reason: RejectReason
    detail: str = ""


class ChannelOpening(EventData, frozen=True, kw_only=True):
    """The funding transaction is on the network."""

    op_id: str
    funding_txid: str
    channel_point: str


class ChannelOpened(EventData, frozen=True, kw_only=True):
    """The funding transaction has its confirmations; ``channel_id`` is the short channel id."""

    op_id: str
    channel_id: str


class ChannelClosing(EventData, frozen=True, kw_only=True):
    op_id: str
    closing_txid: str


class ChannelClosed(EventData, frozen=True, kw_only=True):
    """The closing transaction confirmed: the balance is back in the wallet."""

    op_id: str


CHANNEL_OP_COMMAND_TYPES: Final = (OpenChannel, CloseChannel, RecordChannelOpReport)
ChannelOpCommand = OpenChannel | CloseChannel | RecordChannelOpReport
_EVENTS: Final[tuple[type[EventData], ...]] = (
    ChannelOpenRequested, ChannelCloseRequested, ChannelOpRejected, ChannelOpening,
    ChannelOpened, ChannelClosing, ChannelClosed, ChannelOpenApproved, ChannelOpDeclined,
)  # fmt: skip
CHANNEL_OP_EVENT_TYPES: dict[str, type[EventData]] = {cls.__name__: cls for cls in _EVENTS}


def is_channel_op_stream(stream_id: str) -> bool:
    return stream_id.startswith(CHANNEL_OP_STREAM_PREFIX)
