"""Signed JIT-channel work orders (ADR 0261), as channel orders are signed (ADR 0234). The
order is ``JitHtlcIntercepted``; the canonical bytes are the compact JSON array

    ["corridor/jit-order/v1", key_id, sale_id, event_id, node, client_pubkey, htlc_key,
     payment_hash, amount_msat, opening_fee_msat, forward_msat, channel_size_msat]

A context string of its own: no other kind's signature passes for a JIT order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from schemas.events import EventData
from schemas.jit_messages import JitHtlcIntercepted
from services.engine.ids import event_id_for
from services.signing.orders import UnsignedOrder
from services.signing.port import BadSignature, Signer, Verifier, b64url, from_b64url

JIT_ORDER_CONTEXT: Final = "corridor/jit-order/v1"
_encoder = msgspec.json.Encoder()


def jit_order_bytes(
    *, key_id: str, sale_id: str, event_id: str, order: JitHtlcIntercepted
) -> bytes:
    return _encoder.encode(
        [
            JIT_ORDER_CONTEXT,
            key_id,
            sale_id,
            event_id,
            order.region,
            order.node,
            order.client_pubkey,
            order.htlc_key,
            order.payment_hash,
            order.amount_msat,
            order.opening_fee_msat,
            order.forward_msat,
            order.channel_size_msat,
        ]
    )


def sign_jit_orders(
    signer: Signer, sale_id: str, first_version: int, events: Sequence[EventData]
) -> list[EventData]:
    out: list[EventData] = []
    for version, event in enumerate(events, start=first_version):
        if isinstance(event, JitHtlcIntercepted):
            message = jit_order_bytes(
                key_id=signer.key_id, sale_id=sale_id, event_id=event_id_for(sale_id, version),
                order=event,
            )  # fmt: skip
            event = msgspec.structs.replace(
                event, key_id=signer.key_id, signature=b64url(signer.sign(message))
            )
        out.append(event)
    return out


def verify_jit_order(
    verifier: Verifier, *, sale_id: str, event_id: str, order: JitHtlcIntercepted
) -> None:
    """Raises ``UnsignedOrder`` or ``BadSignature`` unless the engine signed this order."""
    if order.key_id is None or order.signature is None:
        raise UnsignedOrder("the JIT order carries no signature")
    message = jit_order_bytes(key_id=order.key_id, sale_id=sale_id, event_id=event_id, order=order)
    try:
        signature = from_b64url(order.signature)
    except ValueError:
        raise BadSignature("the JIT order's signature is not base64url") from None
    verifier.verify(order.key_id, message, signature)
