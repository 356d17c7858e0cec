"""Commands and events of just-in-time channels sold over LSPS2 (bLIP-52): we are the LSP
(issue 19, ADR 0261).

A sale is an aggregate of its own (``services/domain/jit_channels``, streams ``jit-``). The
LSPS2 server on our node's executor records a ``lsps2.buy`` as a sale; when the HTLC for the
sale's SCID arrives the executor records it, and the decision (open a zero-conf channel to the
client, forward the payment minus the opening fee) is the engine's, written as a signed work
order. The executor reports the channel and the forward. Nothing here carries the promise's
secret or the client's personal data: the client is a node public key.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas import limits
from schemas.common import Message, NodePubkey, PositiveAmountMsat, Region
from schemas.events import EventData

JIT_STREAM_PREFIX: Final = "jit-"
# The events that are the executor's work orders (signed like channel orders, ADR 0234).
JIT_ORDER_EVENTS: Final = frozenset({"JitHtlcIntercepted"})
# "BLOCKxTXxOUT" (LSPS0.scid).
SCID_PATTERN: Final = r"^[0-9]{1,8}x[0-9]{1,8}x[0-9]{1,5}$"
# "<incoming scid>/<htlc id>": the node's circuit key of a held HTLC.
HTLC_KEY_PATTERN: Final = r"^[0-9]{1,8}x[0-9]{1,8}x[0-9]{1,5}/[0-9]{1,20}$"
# bLIP-52: at most 512 bytes; ours are 64 hex characters.
PROMISE_CHARS_MAX: Final = 512

Scid = Annotated[str, msgspec.Meta(pattern=SCID_PATTERN)]
HtlcKey = Annotated[str, msgspec.Meta(pattern=HTLC_KEY_PATTERN)]
Blocks = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Ppm = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
FeeMsat = Annotated[int, msgspec.Meta(ge=0, le=limits.AMOUNT_MSAT_MAX)]
NodeName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# bLIP-52's error codes (lsps2.buy) and our own, in one list.
JitRefusal = Literal[
    "invalid_opening_fee_params",  # 201: past valid_until (the promise is checked by the server)
    "payment_size_too_small",  # 202
    "payment_size_too_large",  # 203
    "fee_over_policy",  # our policy caps the fee (ADR 0262): answered as 203
]
JitFailure = Literal[
    "expired",  # the HTLC came at or after valid_until: unknown_next_peer
    "fee_overflow",  # u64 overflow computing the fee on the HTLC: unknown_next_peer
    "htlc_too_small",  # fee + htlc minimum above the HTLC: unknown_next_peer
    "fee_over_policy",
    "open_failed",  # the node could not open the channel: unknown_next_peer
    "client_disconnected",  # temporary_channel_failure
    "auto_failed",  # the node failed the held HTLC at its auto_fail_height
]


class FeeParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An ``opening_fee_params`` as sold (amounts as integers; the promise was checked)."""

    min_fee_msat: FeeMsat
    proportional: Ppm
    valid_until_ms: Annotated[int, msgspec.Meta(ge=0)]
    min_lifetime: Blocks
    max_client_to_self_delay: Blocks
    min_payment_size_msat: FeeMsat
    max_payment_size_msat: FeeMsat


class SellJitChannel(Message, frozen=True, kw_only=True):
    """``lsps2.buy`` accepted by the LSPS2 server (promise verified); the engine decides."""

    version: Literal[1] = 1
    region: Region
    node: NodeName  # our LSP node
    client_pubkey: NodePubkey
    # The client's request id: a retried buy is the same sale.
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    params: FeeParams
    payment_size_msat: PositiveAmountMsat | None = None


class RecordJitHtlc(Message, frozen=True, kw_only=True):
    """The node holds an HTLC for the sale's SCID (a replay after a restart is the same)."""

    version: Literal[1] = 1
    sale_id: str
    htlc_key: HtlcKey
    payment_hash: Annotated[str, msgspec.Meta(pattern=limits.HEX32_PATTERN)]
    amount_msat: PositiveAmountMsat
    auto_fail_height: Blocks = 0


class RecordJitReport(Message, frozen=True, kw_only=True):
    """What the executor saw: the channel opened, the payment forwarded, or a failure."""

    version: Literal[1] = 1
    sale_id: str
    stage: Literal["opened", "forwarded", "failed"]
    channel_point: str | None = None
    alias_scid: Scid | None = None
    failure: JitFailure | None = None


class JitChannelSold(EventData, frozen=True, kw_only=True):
    sale_id: str
    region: str
    node: str
    client_pubkey: str
    jit_scid: str
    params: FeeParams
    payment_size_msat: int | None = None
    lsp_cltv_expiry_delta: int
    client_trusts_lsp: bool = False
    sold_at_ms: int


class JitSaleRefused(EventData, frozen=True, kw_only=True):
    sale_id: str
    region: str
    node: str
    client_pubkey: str
    reason: JitRefusal
    detail: str = ""


class JitHtlcIntercepted(EventData, frozen=True, kw_only=True):
    """The HTLC is held, and the order: open ``channel_size_msat`` zero-conf to the client,
    forward ``forward_msat`` with ``opening_fee_msat`` as extra_fee. Signed (ADR 0234)."""

    sale_id: str
    region: str  # with ``node``: where the relay dispatches the order
    node: str
    client_pubkey: str
    htlc_key: str
    payment_hash: str
    amount_msat: int
    opening_fee_msat: int
    forward_msat: int
    channel_size_msat: int
    key_id: str | None = None
    signature: str | None = None


class JitChannelOpened(EventData, frozen=True, kw_only=True):
    sale_id: str
    channel_point: str
    alias_scid: str | None = None


class JitPaymentForwarded(EventData, frozen=True, kw_only=True):
    sale_id: str
    forward_msat: int
    opening_fee_msat: int


class JitFailed(EventData, frozen=True, kw_only=True):
    sale_id: str
    failure: JitFailure
    htlc_key: str | None = None
    detail: str = ""


JIT_COMMAND_TYPES: Final = (SellJitChannel, RecordJitHtlc, RecordJitReport)
JitCommand = SellJitChannel | RecordJitHtlc | RecordJitReport
_EVENTS: Final[tuple[type[EventData], ...]] = (
    JitChannelSold, JitSaleRefused, JitHtlcIntercepted, JitChannelOpened, JitPaymentForwarded,
    JitFailed,
)  # fmt: skip
JIT_EVENT_TYPES: dict[str, type[EventData]] = {cls.__name__: cls for cls in _EVENTS}


def is_jit_stream(stream_id: str) -> bool:
    return stream_id.startswith(JIT_STREAM_PREFIX)
