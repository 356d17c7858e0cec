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


class Channel(msgspec.Struct, frozen=True, kw_only=True):
    channel_id: str
    peer_pubkey: str
    capacity_msat: int
    local_balance_msat: int
    remote_balance_msat: int
    active: bool


class LiquiditySummary(msgspec.Struct, frozen=True, kw_only=True):
    channels: int
    active_channels: int
    outbound_msat: int  # sum of local balances on active channels
    inbound_msat: int
    max_sendable_msat: int  # largest single local balance on an active channel


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


class NodeError(Exception):
    """Raised for a node call that failed as a whole (not a payment outcome).

    ``reason`` uses the same taxonomy so callers can decide on retry without parsing text.
    The message never contains credentials.
    """

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@runtime_checkable
class NodePort(Protocol):
    """One Lightning node, whatever its implementation."""

    async def get_info(self) -> NodeInfo: ...

    async def create_invoice(
        self, amount_msat: int | None, memo: str, expiry_s: int
    ) -> Invoice: ...

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

    def payment_updates(self, payment_hash: str) -> AsyncIterator[PaymentResult]:
        """Stream of updates for one payment, ending at a final result (LND TrackPaymentV2)."""
        ...

    async def close(self) -> None: ...
