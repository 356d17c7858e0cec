"""Commands and events of receive intents (issue 18, ADR 0220).

A caller asks Corridor to receive (``CreateReceiveIntent``); the engine records
``ReceiveRequested`` and a signed work order ``ReceiveDispatched`` for one node of the chosen
region, on the intent's own stream ``rcv-<uuid>``. That node's executor creates the invoice
(with a preimage it derives and keeps secret, ADR 0221) and reports it with
``RecordInvoiceState``; the engine records ``InvoiceIssued``, then ``InvoicePaid`` or
``InvoiceExpired``, or ``ReceiveFailed`` when no invoice could be issued.

Events carry the owner's caller id in their metadata, so they are published under the owner's
subtree of the event subjects like a payment's (ADR 0067).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas import limits
from schemas.common import AmountMsat, Caller, Corridor, Hex32, IntentId, Message, Reason, Region
from schemas.events import EventData, Tier

RECEIVE_STREAM_PREFIX: Final = "rcv-"

IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.IDEMPOTENCY_KEY_CHARS_MAX)
]
ReceiveAmountMsat = Annotated[int, msgspec.Meta(gt=0, le=limits.RECEIVE_AMOUNT_MSAT_MAX)]
Memo = Annotated[str, msgspec.Meta(max_length=limits.RECEIVE_MEMO_CHARS_MAX)]
ExpiryS = Annotated[
    int, msgspec.Meta(ge=limits.RECEIVE_EXPIRY_S_MIN, le=limits.RECEIVE_EXPIRY_S_MAX)
]
NodeName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
PaymentRequest = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.PAYMENT_REQUEST_CHARS_MAX)
]
PayIndex = Annotated[int, msgspec.Meta(ge=1, le=limits.PAY_INDEX_MAX)]
TimestampS = Annotated[int, msgspec.Meta(ge=0, le=2**40)]
InvoiceReport = Literal["issued", "paid", "expired", "failed"]


def is_receive_stream(stream_id: str) -> bool:
    return stream_id.startswith(RECEIVE_STREAM_PREFIX)


class CreateReceiveIntent(Message, frozen=True, kw_only=True):
    """Ask Corridor to receive ``amount_msat`` on a node of ``region`` (or of the first usable
    candidate of ``corridor``): exactly one of the two is set. The same ``idempotency_key``
    with the same request is the same intent; with a different request, ``idempotency_mismatch``.

    ``caller`` must be the sender's credential, as for ``SubmitPaymentIntent``.
    """

    idempotency_key: IdempotencyKey
    caller: Caller
    amount_msat: ReceiveAmountMsat
    memo: Memo = ""
    expiry_s: ExpiryS = limits.RECEIVE_EXPIRY_S_DEFAULT
    region: Region | None = None
    corridor: Corridor | None = None
    version: Literal[1] = 1


class RecordInvoiceState(Message, frozen=True, kw_only=True):
    """An executor reports what its node says about a receive's invoice.

    ``issued``: ``payment_hash``, ``payment_request`` and ``expires_at_s`` set. ``paid``: also
    ``preimage`` (hashing to ``payment_hash``), ``amount_received_msat`` and ``pay_index``.
    ``expired``: the node holds the invoice expired or cancelled, unpaid. ``failed``: the node
    refused to create it (``detail`` says why). ``node`` must be the subject's last token and
    ``region`` its region, as for ``RecordPaymentOutcome``.
    """

    intent_id: IntentId
    node: NodeName
    region: Region
    state: InvoiceReport
    payment_hash: Hex32 | None = None
    payment_request: PaymentRequest | None = None
    expires_at_s: TimestampS | None = None
    preimage: Hex32 | None = None
    amount_received_msat: AmountMsat | None = None
    pay_index: PayIndex | None = None
    paid_at_s: TimestampS | None = None
    detail: Reason = ""
    version: Literal[1] = 1


class GetInvoiceCursor(Message, frozen=True, kw_only=True):
    """Query (an executor's, on its status subject): the highest settlement index of ``node``
    the log has an ``InvoicePaid`` for, where its settlement follower resumes (ADR 0221)."""

    node: NodeName
    version: Literal[1] = 1


class InvoiceCursor(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ok: Literal[True] = True
    node: str
    pay_index: int
    version: Literal[1] = 1


# Expired invoices one query answers; the executor asks again for the rest.
EXPIRED_INVOICES_PER_QUERY_MAX: Final = 100


class GetExpiredInvoices(Message, frozen=True, kw_only=True):
    """Query (an executor's expiry watch, on its status subject): ``node``'s issued invoices,
    neither paid nor expired in the log, whose expiry is before ``before_s`` (ADR 0221)."""

    node: NodeName
    before_s: TimestampS
    limit: Annotated[int, msgspec.Meta(ge=1, le=EXPIRED_INVOICES_PER_QUERY_MAX)] = (
        EXPIRED_INVOICES_PER_QUERY_MAX
    )
    version: Literal[1] = 1


class OpenInvoice(msgspec.Struct, frozen=True, kw_only=True):
    intent_id: str
    payment_hash: str


class ExpiredInvoices(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ok: Literal[True] = True
    node: str
    invoices: tuple[OpenInvoice, ...] = ()
    version: Literal[1] = 1


RECEIVE_COMMAND_TYPES: Final = (CreateReceiveIntent, RecordInvoiceState)
ReceiveCommand = CreateReceiveIntent | RecordInvoiceState


class ReceiveRequested(EventData, frozen=True, kw_only=True):
    intent_id: str
    caller: Caller
    idempotency_key: str
    amount_msat: AmountMsat
    memo: str = ""
    expiry_s: int
    region: str | None = None
    corridor: str | None = None
    request_fingerprint: str
    received_at_ms: int
    # Receiving spends nothing: every receive is ``auto`` (ADR 0220).
    tier: Tier = "auto"


class ReceiveDispatched(EventData, frozen=True, kw_only=True):
    """The work order for the executor of ``node``: create this invoice. Signed by the engine
    like a payment's (``services/signing/receive_orders.py``); no preimage travels in it."""

    region: str
    node: str
    amount_msat: AmountMsat
    memo: str = ""
    expiry_s: int
    reason: str = ""
    key_id: str | None = None
    signature: str | None = None


class InvoiceIssued(EventData, frozen=True, kw_only=True):
    node: str
    payment_hash: str
    payment_request: str
    expires_at_s: int


class InvoicePaid(EventData, frozen=True, kw_only=True):
    node: str
    payment_hash: str
    amount_received_msat: AmountMsat
    preimage: str
    pay_index: int
    paid_at_s: int | None = None
    # Paid after ``InvoiceExpired`` was recorded: the node's word wins, the money is credited.
    late: bool = False


class InvoiceExpired(EventData, frozen=True, kw_only=True):
    node: str
    payment_hash: str


class ReceiveFailed(EventData, frozen=True, kw_only=True):
    """No invoice could be issued: no usable node (``no_node``) or the node refused it."""

    reason: str
    detail: str = ""


RECEIVE_EVENT_TYPES: Final[dict[str, type[EventData]]] = {
    cls.__name__: cls
    for cls in (
        ReceiveRequested,
        ReceiveDispatched,
        InvoiceIssued,
        InvoicePaid,
        InvoiceExpired,
        ReceiveFailed,
    )
}
ReceiveEvent = (
    ReceiveRequested
    | ReceiveDispatched
    | InvoiceIssued
    | InvoicePaid
    | InvoiceExpired
    | ReceiveFailed
)
