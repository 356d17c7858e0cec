"""Signed receive work orders (ADR 0220), as ``orders.py`` signs payments' (ADR 0063).

The canonical bytes are the compact JSON array

    ["corridor/receive-order/v1", key_id, intent_id, event_id,
     region, node, amount_msat, memo, expiry_s]

The context string differs from a payment order's, so neither signature can pass for the
other. ``reason`` is not signed: it only explains the engine's choice of node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from schemas.events import EventData
from schemas.receive_messages import ReceiveDispatched
from services.engine.ids import event_id_for
from services.signing.orders import UnsignedOrder
from services.signing.port import BadSignature, Signer, Verifier, b64url, from_b64url

RECEIVE_ORDER_CONTEXT: Final = "corridor/receive-order/v1"
SIGNED_FIELDS: Final = ("region", "node", "amount_msat", "memo", "expiry_s")
UNSIGNED_FIELDS: Final = ("reason", "key_id", "signature")

_encoder = msgspec.json.Encoder()


def receive_order_bytes(
    *, key_id: str, intent_id: str, event_id: str, order: ReceiveDispatched
) -> bytes:
    fields = [RECEIVE_ORDER_CONTEXT, key_id, intent_id, event_id, order.region, order.node]
    return _encoder.encode([*fields, order.amount_msat, order.memo, order.expiry_s])


def sign_receive_orders(
    signer: Signer, intent_id: str, first_version: int, events: Sequence[EventData]
) -> list[EventData]:
    """``events`` with every ``ReceiveDispatched`` signed for the event id it is stored under."""
    out: list[EventData] = []
    for version, event in enumerate(events, start=first_version):
        if isinstance(event, ReceiveDispatched):
            event_id = event_id_for(intent_id, version)
            message = receive_order_bytes(
                key_id=signer.key_id, intent_id=intent_id, event_id=event_id, order=event
            )
            event = msgspec.structs.replace(
                event, key_id=signer.key_id, signature=b64url(signer.sign(message))
            )
        out.append(event)
    return out


def verify_receive_order(
    verifier: Verifier, *, intent_id: str, event_id: str, order: ReceiveDispatched
) -> None:
    """Raises ``UnsignedOrder`` or ``BadSignature`` unless the engine signed this order."""
    if order.key_id is None or order.signature is None:
        raise UnsignedOrder("the receive order carries no signature")
    message = receive_order_bytes(
        key_id=order.key_id, intent_id=intent_id, event_id=event_id, order=order
    )
    try:
        signature = from_b64url(order.signature)
    except ValueError:
        raise BadSignature("the receive order's signature is not base64url") from None
    verifier.verify(order.key_id, message, signature)
