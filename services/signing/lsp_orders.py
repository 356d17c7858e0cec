"""Signed LSP-order work orders (ADR 0252), as ``channel_orders.py`` signs channel operations'
(ADR 0063). The order is ``LspOrderRequested`` itself; the canonical bytes are the compact
JSON array

    ["corridor/lsp-order/v1", key_id, lsp_order_id, event_id, region, node, lsp_pubkey,
     lsp_balance_msat, client_balance_msat, channel_expiry_blocks, announce_channel, token]

which is everything the executor sends to the LSP. The fee budget is not signed: the engine
checks the quote itself when the executor reports it (``RecordLspOrderReport``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from schemas.events import EventData
from schemas.lsp_messages import LspOrderRequested
from services.engine.ids import event_id_for
from services.signing.orders import UnsignedOrder
from services.signing.port import BadSignature, Signer, Verifier, b64url, from_b64url

LSP_ORDER_CONTEXT: Final = "corridor/lsp-order/v1"

_encoder = msgspec.json.Encoder()


def lsp_order_bytes(
    *, key_id: str, lsp_order_id: str, event_id: str, order: LspOrderRequested
) -> bytes:
    return _encoder.encode(
        [
            LSP_ORDER_CONTEXT, key_id, lsp_order_id, event_id, order.region, order.node,
            order.lsp_pubkey, order.lsp_balance_msat, order.client_balance_msat,
            order.channel_expiry_blocks, order.announce_channel, order.token,
        ]
    )  # fmt: skip


def sign_lsp_orders(
    signer: Signer, lsp_order_id: str, first_version: int, events: Sequence[EventData]
) -> list[EventData]:
    """``events`` with the request signed for the event id it is stored under."""
    out: list[EventData] = []
    for version, event in enumerate(events, start=first_version):
        if isinstance(event, LspOrderRequested):
            message = lsp_order_bytes(
                key_id=signer.key_id, lsp_order_id=lsp_order_id,
                event_id=event_id_for(lsp_order_id, version), order=event,
            )  # fmt: skip
            event = msgspec.structs.replace(
                event, key_id=signer.key_id, signature=b64url(signer.sign(message))
            )
        out.append(event)
    return out


def verify_lsp_order(
    verifier: Verifier, *, lsp_order_id: str, event_id: str, order: LspOrderRequested
) -> None:
    """Raises ``UnsignedOrder`` or ``BadSignature`` unless the engine signed this order."""
    if order.key_id is None or order.signature is None:
        raise UnsignedOrder("the LSP order carries no signature")
    message = lsp_order_bytes(
        key_id=order.key_id, lsp_order_id=lsp_order_id, event_id=event_id, order=order
    )
    try:
        signature = from_b64url(order.signature)
    except ValueError:
        raise BadSignature("the LSP order's signature is not base64url") from None
    verifier.verify(order.key_id, message, signature)
