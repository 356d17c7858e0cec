"""Rebalance work orders on the executor (ADR 0244): a signed ``RebalanceDispatched`` from the
dispatch stream, paid exactly as a keysend payment is.

The order is checked against the engine's rebalance signature (context
``corridor/rebalance-order/v1``, so no payment order can pass for one, nor the reverse), then
turned into the ``WorkOrder`` the ``Payer`` takes: attempt 1 of the rebalance's id, a keysend
to the target node. From there it is the payment's never-pay-twice procedure, unchanged
(ADR 0202, 0203): the preimage is derived from the rebalance id, so a restarted or second
worker derives the same payment hash; a redelivery asks the node's record of that hash before
anything is sent; the engine is asked whether the rebalance still waits for its send; the
outcome goes to the engine as a ``RecordPaymentOutcome`` for the ``rbl-`` id.

A circular move (ADR 0247) pays the node's own invoice instead of a keysend: the invoice is
made with that same derived preimage, after the node is asked for it by its hash, so a
redelivered order finds the invoice (and the payment) of the first delivery and never makes a
second one. The ``Payer`` then pays it with the circle's first and last hop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from schemas.events import IntentDispatched
from schemas.rebalance_messages import RebalanceDispatched, is_rebalance_stream
from schemas.records import RecordedEvent
from services import tracing
from services.executor.errors import BadWorkOrder, WorkOrderTooNew
from services.executor.keysend import keysend_preimage
from services.executor.work_order import WorkOrder
from services.lightning.port import Circle, NodePort
from services.signing.port import Verifier
from services.signing.rebalance_orders import verify_rebalance_order

# A circular move's own invoice: long enough for every redelivery of its order (an order
# comes back within minutes), short enough that a forgotten one does not linger.
CIRCLE_INVOICE_EXPIRY_S: Final = 86_400


class RebalanceWorkOrder(WorkOrder, frozen=True, kw_only=True):
    """A rebalance's keysend work order; ``circle`` set for a circular move."""

    circle: Circle | None = None


class _Head(msgspec.Struct):
    type: str


_head = msgspec.json.Decoder(_Head)
_record = msgspec.json.Decoder(RecordedEvent)


def is_rebalance_order(raw: bytes) -> bool:
    """Whether a dispatch message is a rebalance order (cheap: the type field only)."""
    try:
        return _head.decode(raw).type == "RebalanceDispatched"
    except msgspec.DecodeError:
        return False


def rebalance_work_order(
    raw: bytes,
    verifier: Verifier,
    *,
    bytes_max: int,
    headers: Mapping[str, str] | None = None,
) -> RebalanceWorkOrder:
    """The payment work order a signed rebalance order stands for. Raises ``BadWorkOrder``
    (malformed, foreign), ``WorkOrderTooNew`` or a ``SigningError`` (unsigned, forged)."""
    if len(raw) > bytes_max:
        raise BadWorkOrder(f"work order is {len(raw)} bytes, limit is {bytes_max}")
    try:
        record = _record.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadWorkOrder(f"not a recorded event: {exc}") from None
    if record.version > RebalanceDispatched.VERSION:
        raise WorkOrderTooNew(f"RebalanceDispatched v{record.version} is newer than this executor")
    try:
        order = msgspec.convert(record.data, RebalanceDispatched)
    except msgspec.ValidationError as exc:
        raise BadWorkOrder(f"bad RebalanceDispatched payload: {exc}") from None
    if not is_rebalance_stream(record.stream_id):
        raise BadWorkOrder(f"a rebalance order on stream {record.stream_id!r}")
    if order.amount_msat <= 0 or order.pay_timeout_s < 1:
        raise BadWorkOrder("amount_msat and pay_timeout_s must be positive")
    # Before anything else: an order the engine did not sign never reaches the node.
    verify_rebalance_order(
        verifier, rebalance_id=record.stream_id, event_id=record.event_id, order=order
    )
    if (order.payment_request is None) != (order.payment_hash is None):
        raise BadWorkOrder("an invoice order needs payment_request and payment_hash")
    if order.payment_request is not None:  # the target's invoice (a CLN source, ADR 0248)
        keysend = IntentDispatched(
            attempt=1, region=order.region, node=order.node, amount_msat=order.amount_msat,
            max_fee_msat=order.max_fee_msat, payment_request=order.payment_request,
            payment_hash=order.payment_hash, invoice_has_amount=True,
            pay_timeout_s=order.pay_timeout_s,
        )  # fmt: skip
    else:
        keysend = IntentDispatched(
            attempt=1, region=order.region, node=order.node, amount_msat=order.amount_msat,
            max_fee_msat=order.max_fee_msat, destination=order.destination,
            pay_timeout_s=order.pay_timeout_s,
        )  # fmt: skip
    circle = None
    if order.outgoing_channel_id is not None or order.last_hop_pubkey is not None:
        if order.outgoing_channel_id is None or order.last_hop_pubkey is None:
            raise BadWorkOrder("a circular order needs outgoing_channel_id and last_hop_pubkey")
        circle = Circle(
            outgoing_channel_id=order.outgoing_channel_id, last_hop_pubkey=order.last_hop_pubkey
        )
    return RebalanceWorkOrder(
        circle=circle,
        intent_id=record.stream_id,
        event_id=record.event_id,
        correlation_id=record.metadata.correlation_id,
        dispatched=keysend,
        traceparent=tracing.valid((headers or {}).get(tracing.TRACEPARENT))
        or record.metadata.traceparent,
    )


def invoice_memo(rebalance_id: str) -> str:
    return f"corridor:rebalance:{rebalance_id}"


async def with_own_invoice(
    node: NodePort, secret: bytes, order: RebalanceWorkOrder
) -> RebalanceWorkOrder:
    """A circular order made payable: the node's own invoice for the rebalance, found by its
    derived hash or created with its derived preimage. Raises ``NodeError`` when the node
    cannot answer (nothing was paid; the order comes back)."""
    assert order.circle is not None
    preimage, payment_hash = keysend_preimage(secret, order.intent_id, order.attempt)
    found = await node.lookup_invoice(payment_hash)
    if found is not None:
        payment_request = found.payment_request
    else:
        created = await node.create_invoice(
            order.dispatched.amount_msat, invoice_memo(order.intent_id),
            CIRCLE_INVOICE_EXPIRY_S, preimage=preimage,
        )  # fmt: skip
        payment_request = created.payment_request
    dispatched = msgspec.structs.replace(
        order.dispatched, destination=None, payment_request=payment_request,
        payment_hash=payment_hash, invoice_has_amount=True,
    )  # fmt: skip
    return msgspec.structs.replace(order, dispatched=dispatched)
