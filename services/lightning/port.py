"""The Lightning node port: the one interface every node adapter implements.

No client-library type (protobuf message, pyln object) crosses this boundary. Amounts are
integer millisatoshis. A payment result is a closed set: succeeded, failed (with a reason from
one taxonomy) or in flight. "Unknown" is never reported as failed: when an adapter cannot tell,
it answers ``PaymentInFlight`` and the caller recovers with ``lookup_payment``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from typing import Final, Literal, Protocol, runtime_checkable

import msgspec


class FailureReason(enum.StrEnum):
    NO_ROUTE = "no_route"
    INSUFFICIENT_LIQUIDITY = "insufficient_liquidity"
    TIMEOUT = "timeout"
    INCORRECT_DETAILS = "incorrect_details"
    INVOICE_EXPIRED = "invoice_expired"
    ALREADY_PAID = "already_paid"
    NODE_UNAVAILABLE = "node_unavailable"
    UNKNOWN = "unknown"


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    alias: str
    pubkey: str
    network: str  # mainnet | testnet | signet | regtest
    block_height: int


class Invoice(msgspec.Struct, frozen=True, kw_only=True):
    payment_request: str
    payment_hash: str  # hex
    amount_msat: int | None
    expiry_s: int
    created_at_s: int


class DecodedInvoice(msgspec.Struct, frozen=True, kw_only=True):
    payment_request: str
    payment_hash: str
    destination: str  # payee pubkey, hex
    amount_msat: int | None
    network: str
    created_at_s: int
    expiry_s: int
    description: str | None = None
    min_final_cltv_expiry: int = 18


class RouteHop(msgspec.Struct, frozen=True, kw_only=True):
    pubkey: str
    channel_id: str
    amount_msat: int
    fee_msat: int


class PaymentSucceeded(msgspec.Struct, frozen=True, kw_only=True, tag="succeeded"):
    payment_hash: str
    preimage: str  # hex
    amount_msat: int
    fee_msat: int
    hops: tuple[RouteHop, ...] = ()


class PaymentFailed(msgspec.Struct, frozen=True, kw_only=True, tag="failed"):
    payment_hash: str
    reason: FailureReason
    detail: str = ""


class PaymentInFlight(msgspec.Struct, frozen=True, kw_only=True, tag="in_flight"):
    payment_hash: str
    amount_msat: int | None = None


PaymentResult = PaymentSucceeded | PaymentFailed | PaymentInFlight


class Circle(msgspec.Struct, frozen=True, kw_only=True):
    """A payment from a node to its own invoice, out of ``outgoing_channel_id`` (BLOCKxTXxOUT)
    and back in from ``last_hop_pubkey``: a circular rebalance (ADR 0247). lnd:
    ``SendPaymentV2`` with ``outgoing_chan_ids``, ``last_hop_pubkey`` and
    ``allow_self_payment`` (``routerrpc/router.proto``)."""

    outgoing_channel_id: str
    last_hop_pubkey: str


class PayRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Either ``payment_request`` (BOLT 11) or ``destination`` + ``amount_msat`` (keysend).

    ``payment_hash`` is the idempotency key at network level. For keysend the caller chooses
    the preimage so that a retry after a crash reuses the same hash.
    """

    max_fee_msat: int
    timeout_s: float
    payment_request: str | None = None
    destination: str | None = None
    amount_msat: int | None = None
    payment_hash: str | None = None
    keysend_preimage: str | None = None
    # The caller vouches that no earlier send of this hash can be live on this node: it asked
    # the node just now and found no record, or this is the first delivery of the attempt. An
    # adapter whose node refuses a second live attempt itself (lnd) then skips its own look-up,
    # and raises ``NodeError`` when its send's outcome is ambiguous (the node's record could
    # be older than this call, so only the caller can judge it).
    node_record_checked: bool = False
    # Set: pay ``payment_request`` (our own invoice) around this circle. An adapter that cannot
    # restrict the first and last hop refuses it with ``ValueError`` before anything is sent.
    circle: Circle | None = None


class Channel(msgspec.Struct, frozen=True, kw_only=True):
    channel_id: str
    peer_pubkey: str
    capacity_msat: int
    local_balance_msat: int
    remote_balance_msat: int
    active: bool
    # The funding outpoint ``txid:index`` ("" if the adapter cannot tell).
    channel_point: str = ""
    # HTLCs in flight on the channel, both directions (LND pending_htlcs, CLN htlcs).
    pending_htlcs_msat: int = 0
    # Our fee policy for forwarding out over this channel (None if the node did not say).
    fee_base_msat: int | None = None
    fee_ppm: int | None = None
    # Whether we opened it (None if the node did not say).
    initiator: bool | None = None
    # The note-to-self given when we opened it (``open_channel``'s ``memo``; "" if none).
    memo: str = ""


InvoiceState = Literal["open", "accepted", "paid", "cancelled", "expired"]


class InvoiceStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One invoice of ours as the node holds it (LND LookupInvoiceV2/SubscribeInvoices, CLN
    listinvoices/waitanyinvoice).

    ``state``: ``open`` (payable), ``accepted`` (a hold invoice's HTLCs are held, not yet
    settled), ``paid`` (settled: ``preimage`` and ``amount_received_msat`` set), ``cancelled``
    (cancelled by us) or ``expired`` (past its expiry unpaid; lnd reports these CANCELED).
    ``pay_index`` is the node's settlement index (LND ``settle_index``, CLN ``pay_index``):
    strictly increasing in settlement order, 0 while unpaid, so a follower resumes after it.
    """

    payment_hash: str
    state: InvoiceState
    payment_request: str
    amount_msat: int | None  # what the invoice asks; None for "any amount"
    amount_received_msat: int = 0
    preimage: str | None = None
    created_at_s: int
    expires_at_s: int
    paid_at_s: int | None = None
    pay_index: int = 0


class PendingChannel(msgspec.Struct, frozen=True, kw_only=True):
    """A channel being opened (funding not yet confirmed deep enough) or closed (closing
    transaction not yet confirmed): LND PendingChannels, CLN listpeerchannels' states."""

    channel_point: str  # funding outpoint txid:index
    peer_pubkey: str
    capacity_msat: int
    local_balance_msat: int
    state: Literal["opening", "closing"]
    confirmations: int = 0
    closing_txid: str | None = None
    memo: str = ""  # as on ``Channel``


class WalletBalance(msgspec.Struct, frozen=True, kw_only=True):
    """The node's on-chain wallet (LND WalletBalance, CLN listfunds' outputs), in msat."""

    confirmed_msat: int
    unconfirmed_msat: int


class ChannelOpening(msgspec.Struct, frozen=True, kw_only=True):
    """What a channel open returns at once: its funding outpoint, unconfirmed."""

    channel_point: str  # txid:index
    funding_txid: str
    output_index: int


class LiquiditySummary(msgspec.Struct, frozen=True, kw_only=True):
    channels: int
    active_channels: int
    outbound_msat: int  # sum of local balances on active channels
    inbound_msat: int
    max_sendable_msat: int  # largest single local balance on an active channel


# lnd refuses channel memos longer than this (OpenChannelRequest.memo); a caller's tag is short.
CHANNEL_MEMO_CHARS_MAX: Final = 500

# One page of the node's payment list: LND's ListPayments and CLN's listsendpays answer a
# thousand records in well under a megabyte, and a reconciliation pass asks page by page.
PAYMENT_PAGE_MAX: Final = 1000

NodePaymentStatus = Literal["succeeded", "failed", "in_flight"]


class NodePaymentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One outgoing payment as the node's own list holds it (for reconciliation).

    ``index`` is the node's creation index (LND ``payment_index``, CLN ``created_index``):
    strictly increasing along the list, so a cursor can resume after it. Amounts are what the
    node recorded: ``amount_msat`` delivered, ``fee_msat`` paid to the route (0 unless paid).
    """

    index: int
    payment_hash: str
    status: NodePaymentStatus
    amount_msat: int
    fee_msat: int
    created_at_s: int
    preimage: str | None = None


class NodePaymentPage(msgspec.Struct, frozen=True, kw_only=True):
    """``records`` in index order; pass ``next_index`` back as ``after_index`` to go on.

    An empty page ends the list, and then ``next_index`` is the ``after_index`` asked for.
    """

    records: tuple[NodePaymentRecord, ...]
    next_index: int


class CustomMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One BOLT 1 custom message a peer sent to our node (LND SubscribeCustomMessages, CLN's
    ``custommsg`` hook through the Corridor plugin, ADR 0250). ``data`` excludes the 2-byte
    type, which is ``message_type``."""

    peer_pubkey: str
    message_type: int
    data: bytes


# BOLT 1: a message is at most 65535 bytes, the 2-byte type included, so the payload is at
# most 65533 (lnd's lnwire.MaxMsgBody); CLN's sendcustommsg refuses longer too.
CUSTOM_MESSAGE_DATA_BYTES_MAX: Final = 65533
# BOLT 1's custom range starts at 32768; lnd refuses lower types without a dev build.
CUSTOM_MESSAGE_TYPE_MIN: Final = 32768
CUSTOM_MESSAGE_TYPE_MAX: Final = 65535


class NodeError(Exception):
    """Raised for a node call that failed as a whole (not a payment outcome).

    ``reason`` uses the same taxonomy so callers can decide on retry without parsing text.
    The message never contains credentials.
    """

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DuplicateInvoice(NodeError):
    """The node already holds an invoice with this payment hash (LND "invoice with payment
    hash already exists", CLN 901): a retry that chose the same preimage. Nothing was created;
    ``lookup_invoice`` answers with the one that exists."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureReason.INCORRECT_DETAILS, message)


@runtime_checkable
class NodePort(Protocol):
    """One Lightning node, whatever its implementation."""

    async def get_info(self) -> NodeInfo: ...

    async def create_invoice(
        self, amount_msat: int | None, memo: str, expiry_s: int, *, preimage: str | None = None
    ) -> Invoice:
        """A new invoice (LND AddInvoice, CLN invoice). ``preimage`` (hex, 32 bytes) is the
        caller's choice when given (LND ``r_preimage``, CLN ``preimage``), so a retry after a
        crash asks for the same payment hash and the node refuses the duplicate."""
        ...

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus | None:
        """The node's record of an invoice of ours; ``None`` if it has none for the hash."""
        ...

    def invoice_updates(self, *, after_pay_index: int) -> AsyncIterator[InvoiceStatus]:
        """Every invoice paid after ``after_pay_index``, in pay order, then each newly paid
        one as it is paid (LND SubscribeInvoices with ``settle_index``, CLN waitanyinvoice
        with ``lastpay_index``). Does not end on its own; raises ``NodeError`` if the node
        goes away."""
        ...

    async def decode(self, payment_request: str) -> DecodedInvoice: ...

    async def pay(self, request: PayRequest) -> PaymentResult:
        """Send a payment, or answer from the node's record if this hash was already sent.

        Never sends while an earlier attempt for the same payment hash is in flight or has
        succeeded; only an attempt the node records as definitively failed may be sent again
        (as LND and CLN themselves allow). Returns ``PaymentInFlight`` when the outcome is not
        known within ``request.timeout_s``.
        """
        ...

    async def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        """The node's own record of a payment; ``None`` if the node never attempted it."""
        ...

    async def list_payments(self, *, after_index: int, limit: int) -> NodePaymentPage:
        """The node's outgoing payments with index above ``after_index``, oldest first, at
        most ``limit`` (1 to ``PAYMENT_PAGE_MAX``) of them: its whole record, paid or not,
        whoever asked it to pay (LND ListPayments, CLN listsendpays with ``index=created``)."""
        ...

    async def list_channels(self) -> list[Channel]: ...

    async def liquidity_summary(self) -> LiquiditySummary: ...

    async def pending_channels(self) -> list[PendingChannel]: ...

    async def wallet_balance(self) -> WalletBalance: ...

    async def open_channel(
        self,
        *,
        peer_pubkey: str,
        local_amount_msat: int,
        sat_per_vbyte: int,
        push_msat: int = 0,
        memo: str = "",
        zero_conf: bool = False,
        private: bool = False,
    ) -> ChannelOpening:
        """Open a channel to a peer the node knows (LND OpenChannelSync, CLN fundchannel).

        ``zero_conf`` opens it usable at once under an scid alias (LND ``zero_conf`` with
        ``scid_alias``, CLN ``mindepth: 0``), which must be ``private`` (unannounced, LND
        ``private``, CLN ``announce: false``): LSPS2's JIT channel (ADR 0260).

        ``memo`` (at most ``CHANNEL_MEMO_CHARS_MAX``) is kept by the node with the channel and
        shows on ``Channel.memo`` and ``PendingChannel.memo``: a caller retrying after a crash
        looks for it there before opening again (ADR 0233). Amounts must be whole satoshis.
        """
        ...

    async def close_channel(self, *, channel_point: str, sat_per_vbyte: int) -> str:
        """Close a channel cooperatively; the closing transaction's txid (LND CloseChannel,
        CLN close)."""
        ...

    def payment_updates(self, payment_hash: str) -> AsyncIterator[PaymentResult]:
        """Stream of updates for one payment, ending at a final result (LND TrackPaymentV2)."""
        ...

    async def send_custom_message(
        self, *, peer_pubkey: str, message_type: int, data: bytes
    ) -> None:
        """Send one custom message to a connected peer (LND SendCustomMessage, CLN
        sendcustommsg). Delivery is best effort: the node only queues it. ``message_type``
        is odd and within the custom range; ``data`` at most ``CUSTOM_MESSAGE_DATA_BYTES_MAX``.
        Raises ``NodeError`` (``NO_ROUTE`` when the peer is not connected)."""
        ...

    def custom_messages(self) -> AsyncIterator[CustomMessage]:
        """Every custom message that reaches the node from the moment the stream is read,
        in arrival order (LND SubscribeCustomMessages, CLN's ``custommsg`` hook through the
        Corridor plugin). Does not end on its own; raises ``NodeError`` if the node goes
        away. Messages that arrive while nobody reads are not kept, as on the nodes."""
        ...

    async def close(self) -> None: ...
