"""Signed rebalance work orders (ADR 0244), as ``orders.py`` signs payments' (ADR 0063).

The canonical bytes are the compact JSON array

    ["corridor/rebalance-order/v1", key_id, rebalance_id, event_id,
     region, node, destination, amount_msat, max_fee_msat, pay_timeout_s,
     outgoing_channel_id or "", last_hop_pubkey or "", payment_request or "",
     payment_hash or ""]

The context string differs from the payment, receive and channel orders', so no signature
passes for another kind's: a rebalance order can never be paid as a customer's payment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from schemas.events import EventData
from schemas.rebalance_messages import RebalanceDispatched
from services.engine.ids import event_id_for
from services.signing.orders import UnsignedOrder
from services.signing.port import BadSignature, Signer, Verifier, b64url, from_b64url

REBALANCE_ORDER_CONTEXT: Final = "corridor/rebalance-order/v1"

_encoder = msgspec.json.Encoder()


def rebalance_order_bytes(
    *, key_id: str, rebalance_id: str, event_id: str, order: RebalanceDispatched
) -> bytes:
    head = [REBALANCE_ORDER_CONTEXT, key_id, rebalance_id, event_id, order.region, order.node]
    body: list[object] = [order.destination, order.amount_msat, order.max_fee_msat]
    body += [order.pay_timeout_s, order.outgoing_channel_id or "", order.last_hop_pubkey or ""]
    body += [order.payment_request or "", order.payment_hash or ""]
    return _encoder.encode([*head, *body])


def sign_rebalance_orders(
    signer: Signer, rebalance_id: str, first_version: int, events: Sequence[EventData]
) -> list[EventData]:
    """``events`` with every ``RebalanceDispatched`` signed for the event id it is stored under."""
    out: list[EventData] = []
    for version, event in enumerate(events, start=first_version):
        if isinstance(event, RebalanceDispatched):
            message = rebalance_order_bytes(
                key_id=signer.key_id, rebalance_id=rebalance_id,
                event_id=event_id_for(rebalance_id, version), order=event,
            )  # fmt: skip
            event = msgspec.structs.replace(
                event, key_id=signer.key_id, signature=b64url(signer.sign(message))
            )
        out.append(event)
    return out


def verify_rebalance_order(
    verifier: Verifier, *, rebalance_id: str, event_id: str, order: RebalanceDispatched
) -> None:
    """Raises ``UnsignedOrder`` or ``BadSignature`` unless the engine signed this order."""
    if order.key_id is None or order.signature is None:
        raise UnsignedOrder("the rebalance order carries no signature")
    message = rebalance_order_bytes(
        key_id=order.key_id, rebalance_id=rebalance_id, event_id=event_id, order=order
    )
    try:
        signature = from_b64url(order.signature)
    except ValueError:
        raise BadSignature("the rebalance order's signature is not base64url") from None
    verifier.verify(order.key_id, message, signature)
