"""Signed channel-operation work orders (ADR 0234), as ``orders.py`` signs payments' (ADR
0063). The order is the request event itself (``ChannelOpenRequested`` or
``ChannelCloseRequested``) of tier ``auto``, or the approval of one of tier ``approval``
(``ChannelOpenApproved``, ADR 0236), which repeats the request; the canonical bytes are the
compact JSON array

    ["corridor/channel-order/v1", key_id, op_id, event_id, kind, region, node,
     peer_pubkey or channel_point, local_amount_msat, push_msat, sat_per_vbyte]

The context string differs from the payment and receive orders', so no signature passes for
another kind's. What the executor does not act on (caller, fingerprint, budget) is not signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from schemas.channel_messages import (
    ChannelCloseRequested,
    ChannelOpenApproved,
    ChannelOpenRequested,
)
from schemas.events import EventData
from services.engine.ids import event_id_for
from services.signing.orders import UnsignedOrder
from services.signing.port import BadSignature, Signer, Verifier, b64url, from_b64url

CHANNEL_ORDER_CONTEXT: Final = "corridor/channel-order/v1"
ChannelOrder = ChannelOpenRequested | ChannelCloseRequested

_encoder = msgspec.json.Encoder()


def channel_order_bytes(*, key_id: str, op_id: str, event_id: str, order: ChannelOrder) -> bytes:
    head = [CHANNEL_ORDER_CONTEXT, key_id, op_id, event_id]
    if isinstance(order, ChannelOpenRequested):
        body: list[object] = ["open", order.region, order.node, order.peer_pubkey]
        body += [order.local_amount_msat, order.push_msat, order.sat_per_vbyte]
    else:
        body = ["close", order.region, order.node, order.channel_point, 0, 0, order.sat_per_vbyte]
    return _encoder.encode([*head, *body])


def sign_channel_orders(
    signer: Signer, op_id: str, first_version: int, events: Sequence[EventData]
) -> list[EventData]:
    """``events`` with every request signed for the event id it is stored under."""
    out: list[EventData] = []
    for version, event in enumerate(events, start=first_version):
        if isinstance(event, ChannelOpenRequested | ChannelCloseRequested) and (
            event.tier == "auto" or isinstance(event, ChannelOpenApproved)
        ):
            # A request waiting for approval is no order: unsigned, no executor acts on it.
            message = channel_order_bytes(
                key_id=signer.key_id, op_id=op_id, event_id=event_id_for(op_id, version),
                order=event,
            )  # fmt: skip
            event = msgspec.structs.replace(
                event, key_id=signer.key_id, signature=b64url(signer.sign(message))
            )
        out.append(event)
    return out


def verify_channel_order(
    verifier: Verifier, *, op_id: str, event_id: str, order: ChannelOrder
) -> None:
    """Raises ``UnsignedOrder`` or ``BadSignature`` unless the engine signed this order."""
    if order.key_id is None or order.signature is None:
        raise UnsignedOrder("the channel order carries no signature")
    message = channel_order_bytes(key_id=order.key_id, op_id=op_id, event_id=event_id, order=order)
    try:
        signature = from_b64url(order.signature)
    except ValueError:
        raise BadSignature("the channel order's signature is not base64url") from None
    verifier.verify(order.key_id, message, signature)
