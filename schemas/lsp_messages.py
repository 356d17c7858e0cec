"""Commands and events of LSP orders: inbound channels we buy from an external LSP over LSPS1
(bLIP-51, issue 19, ADR 0251).

An operator orders a channel from an LSP for one of our nodes; the aggregate
(``services/domain/lsp_orders``) records the request, checks the LSP's quote against the
operator's fee budget, links the payment of the LSP's invoice (an ordinary payment intent
with the idempotency key ``lsp-order:<order id>``) and follows the order to a terminal state.
Amounts are msat like everywhere (LSPS's ``_sat`` strings are converted at the executor).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from schemas import limits
from schemas.common import Caller, Corridor, Message, NodePubkey, PositiveAmountMsat, Region
from schemas.events import EventData

# An LSP order's stream: this prefix and a UUID of (operator, idempotency key).
LSP_ORDER_STREAM_PREFIX: Final = "lsp-"
# The payment intent that pays an order's invoice has this idempotency key prefix: one order,
# one key, so the intent aggregate itself guarantees the invoice is paid at most once.
LSP_PAYMENT_KEY_PREFIX: Final = "lsp-order:"
# bLIP-51: order ids are at most 64 characters; tokens are the LSP's to size, 512 is generous.
REMOTE_ORDER_ID_CHARS_MAX: Final = 64
TOKEN_CHARS_MAX: Final = 512
# bLIP-51: a channel lease of at most this many blocks (the spec's example max, ~20 weeks).
CHANNEL_EXPIRY_BLOCKS_MAX: Final = 0xFFFF_FFFF
# The LSP's texts we keep (error messages, property names) are cut to this.
LSP_TEXT_CHARS_MAX: Final = 256
NODE_NAME_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
OUTPOINT_PATTERN: Final = r"^[0-9a-f]{64}:[0-9]{1,5}$"

IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.IDEMPOTENCY_KEY_CHARS_MAX)
]
NodeName = Annotated[str, msgspec.Meta(pattern=NODE_NAME_PATTERN)]
AmountMsat = Annotated[int, msgspec.Meta(ge=0, le=limits.AMOUNT_MSAT_MAX)]
LspText = Annotated[str, msgspec.Meta(max_length=LSP_TEXT_CHARS_MAX)]
RemoteOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=REMOTE_ORDER_ID_CHARS_MAX)]
Invoice = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.PAYMENT_REQUEST_CHARS_MAX)]
Outpoint = Annotated[str, msgspec.Meta(pattern=OUTPOINT_PATTERN)]
ExpiryBlocks = Annotated[int, msgspec.Meta(ge=1, le=CHANNEL_EXPIRY_BLOCKS_MAX)]
LspOrderState = Literal["CREATED", "COMPLETED", "FAILED"]
# bLIP-51's payment states; CANCELLED is deprecated but still read (as REFUNDED).
LspPaymentState = Literal["EXPECT_PAYMENT", "HOLD", "PAID", "REFUNDED", "CANCELLED"]
RejectReason = Literal["not_whole_sats", "amount_over_limit"]
AbandonReason = Literal["fee_over_budget", "total_mismatch", "invoice_mismatch", "already_expired"]
FailReason = Literal["lsp_failed", "lsp_no_answer", "expired_unpaid", "payment_failed"]


class OrderLspChannel(Message, frozen=True, kw_only=True):
    """Buy an inbound channel of ``lsp_balance_msat`` for ``node`` from the LSP at
    ``lsp_pubkey``, paying at most ``max_fee_msat`` in the LSP's fee."""

    version: Literal[1] = 1
    idempotency_key: IdempotencyKey
    region: Region
    node: NodeName
    lsp_pubkey: NodePubkey
    lsp_balance_msat: PositiveAmountMsat
    client_balance_msat: AmountMsat = 0
    channel_expiry_blocks: ExpiryBlocks = 4032  # four weeks
    max_fee_msat: AmountMsat
    # The routing fee the payment of the invoice may cost on top (the intent's max_fee_msat).
    max_routing_fee_msat: AmountMsat = 50_000
    announce_channel: bool = False
    token: Annotated[str, msgspec.Meta(max_length=TOKEN_CHARS_MAX)] = ""
    # The corridor whose payment intent pays the LSP's invoice (ADR 0252); the engine refuses
    # an order without one (``missing_corridor``).
    corridor: Corridor | None = None


class RecordLspOrderReport(Message, frozen=True, kw_only=True):
    """What the executor learnt from the LSP (or from paying it).

    ``created``: the LSP's order (``remote_order_id``, the invoice and its decoded amount and
    payee, the quote, its expiry). ``refused``: the LSP's error. ``status``: ``get_order``'s
    states, with the funding outpoint once the channel is published. ``paid``/``unpaid``: the
    linked payment intent succeeded or failed for good. ``no_answer``: the LSP did not answer
    ``create_order`` within the executor's deadlines."""

    version: Literal[1] = 1
    lsp_order_id: str
    stage: Literal["created", "refused", "status", "paid", "unpaid", "no_answer"]
    remote_order_id: RemoteOrderId | None = None
    invoice: Invoice | None = None
    invoice_amount_msat: AmountMsat | None = None
    invoice_payee: NodePubkey | None = None
    fee_total_msat: AmountMsat | None = None
    order_total_msat: AmountMsat | None = None
    expires_at_s: int | None = None
    refusal_code: int | None = None
    refusal_message: LspText = ""
    refusal_property: LspText = ""
    order_state: LspOrderState | None = None
    payment_state: LspPaymentState | None = None
    funding_outpoint: Outpoint | None = None
    payment_intent_id: str | None = None


class LspOrderRequested(EventData, frozen=True, kw_only=True):
    """The order as asked; also the executor's work order (it talks to the LSP)."""

    lsp_order_id: str
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    region: str
    node: str
    lsp_pubkey: str
    lsp_balance_msat: int
    client_balance_msat: int
    channel_expiry_blocks: int
    max_fee_msat: int
    max_routing_fee_msat: int
    announce_channel: bool
    token: str = ""
    requested_at_ms: int
    # No answer from the LSP by then: the order fails (nothing was paid).
    answer_deadline_ms: int
    # ADR 0252: the corridor that pays the invoice, and the engine's signature over the work
    # order (``services/signing/lsp_orders.py``); absent on orders recorded before.
    corridor: str = ""
    key_id: str | None = None
    signature: str | None = None


class LspOrderRejected(EventData, frozen=True, kw_only=True):
    """Refused by our own rules before anything was sent to the LSP."""

    lsp_order_id: str
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    reason: RejectReason
    detail: str = ""


class LspOrderCreated(EventData, frozen=True, kw_only=True):
    """The LSP created the order and quoted it."""

    lsp_order_id: str
    remote_order_id: str
    invoice: str
    fee_total_msat: int
    order_total_msat: int
    expires_at_s: int


class LspOrderPaymentRequested(EventData, frozen=True, kw_only=True):
    """The quote is within budget: pay ``invoice`` as an ordinary payment intent with
    ``payment_key`` (one order, one key: never paid twice)."""

    lsp_order_id: str
    payment_key: str
    invoice: str
    amount_msat: int
    max_routing_fee_msat: int


class LspOrderAbandoned(EventData, frozen=True, kw_only=True):
    """The LSP's quote broke our checks; its invoice is never paid."""

    lsp_order_id: str
    reason: AbandonReason
    detail: str = ""


class LspOrderRefused(EventData, frozen=True, kw_only=True):
    """The LSP refused the order (bLIP-51 codes: 100 option mismatch, 102 token, 1 client
    rejected, -32602 invalid params)."""

    lsp_order_id: str
    code: int
    message: str = ""
    property: str = ""


class LspOrderPaid(EventData, frozen=True, kw_only=True):
    lsp_order_id: str
    payment_intent_id: str


class LspOrderCompleted(EventData, frozen=True, kw_only=True):
    """The LSP published the channel's funding transaction: the inbound liquidity is ours."""

    lsp_order_id: str
    funding_outpoint: str


class LspOrderFailed(EventData, frozen=True, kw_only=True):
    lsp_order_id: str
    reason: FailReason
    payment_state: str = ""


class GetLspInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``corridor.lsp.v1.info.<node>``: the LSP's LSPS1 options, asked by that node's executor
    (ADR 0252)."""

    lsp_pubkey: NodePubkey


class LspInfoView(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The answer to ``GetLspInfo``: bLIP-51's ``get_info`` result as the LSP sent it (its
    amounts are the LSP's sat strings), checked for its balance bounds."""

    ok: Literal[True] = True
    info: dict[str, Any]
    version: Literal[1] = 1


LSP_ORDER_COMMAND_TYPES: Final = (OrderLspChannel, RecordLspOrderReport)
LspOrderCommand = OrderLspChannel | RecordLspOrderReport
_EVENTS: Final[tuple[type[EventData], ...]] = (
    LspOrderRequested, LspOrderRejected, LspOrderCreated, LspOrderPaymentRequested,
    LspOrderAbandoned, LspOrderRefused, LspOrderPaid, LspOrderCompleted, LspOrderFailed,
)  # fmt: skip
LSP_ORDER_EVENT_TYPES: dict[str, type[EventData]] = {cls.__name__: cls for cls in _EVENTS}


def is_lsp_order_stream(stream_id: str) -> bool:
    return stream_id.startswith(LSP_ORDER_STREAM_PREFIX)


def payment_key_of(lsp_order_id: str) -> str:
    return LSP_PAYMENT_KEY_PREFIX + lsp_order_id
