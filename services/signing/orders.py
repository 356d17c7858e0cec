"""Signed work orders: which bytes of an ``IntentDispatched`` the engine signs (ADR 0063).

The canonical bytes of a work order are the compact JSON array (no whitespace, UTF-8)

    ["corridor/work-order/v1", key_id, intent_id, event_id,
     attempt, region, node, amount_msat, max_fee_msat,
     payment_request, destination, payment_hash, pay_timeout_s, invoice_has_amount]

with absent optional fields as ``null``. Strings are escaped as RFC 8785 (JCS) escapes them
(``"``, ``\\``, and control characters only; everything else literal UTF-8), and integers are
written in plain decimal. That is JCS for every value except integers above 2**53, which JCS
cannot carry and amounts in msat can reach. ``msgspec.json.encode`` of the list gives exactly
these bytes; a test holds it to ``rfc8785`` for the values JCS accepts.

- The first element separates this use of the key from any other the engine may sign with
  it; a different layout gets a new context string, never a silent change.
- ``intent_id`` (the event's stream) and ``event_id`` (derived from stream and version) bind
  the order to one event of one intent: the executor derives keysend preimages from the
  intent id and reports outcomes under the event id.
- ``key_id`` is signed too, so a signature cannot be relabelled to another key.
- Every other field of ``IntentDispatched`` is listed: ``SIGNED_FIELDS`` and a test keep the
  list and the struct in step, so a new field cannot travel unsigned by accident.

``signature`` is the Ed25519 signature (RFC 8032) of those bytes, in unpadded base64url.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from schemas.events import EventData, IntentDispatched
from services.engine.ids import event_id_for
from services.signing.port import (
    BadSignature,
    Signer,
    SigningError,
    Verifier,
    b64url,
    from_b64url,
)

ORDER_SIGNING_CONTEXT: Final = "corridor/work-order/v1"
# The fields of IntentDispatched the signature covers, in their place in the canonical array.
SIGNED_FIELDS: Final = (
    "attempt",
    "region",
    "node",
    "amount_msat",
    "max_fee_msat",
    "payment_request",
    "destination",
    "payment_hash",
    "pay_timeout_s",
    "invoice_has_amount",
)
# What carries the signature itself, so is not part of what is signed.
SIGNATURE_FIELDS: Final = ("key_id", "signature")

_encoder = msgspec.json.Encoder()


class UnsignedOrder(SigningError):
    """A work order without a key id or signature: never paid once signing is in force."""

    code = "unsigned_work_order"


def order_signing_bytes(
    *, key_id: str, intent_id: str, event_id: str, order: IntentDispatched
) -> bytes:
    """The canonical bytes of ``order`` (see the module docstring)."""
    return _encoder.encode(
        [
            ORDER_SIGNING_CONTEXT,
            key_id,
            intent_id,
            event_id,
            order.attempt,
            order.region,
            order.node,
            order.amount_msat,
            order.max_fee_msat,
            order.payment_request,
            order.destination,
            order.payment_hash,
            order.pay_timeout_s,
            order.invoice_has_amount,
        ]
    )


def sign_order(
    signer: Signer, *, intent_id: str, event_id: str, order: IntentDispatched
) -> IntentDispatched:
    """``order`` with ``key_id`` and ``signature`` set (any earlier ones are replaced)."""
    key_id = signer.key_id
    message = order_signing_bytes(
        key_id=key_id, intent_id=intent_id, event_id=event_id, order=order
    )
    return msgspec.structs.replace(order, key_id=key_id, signature=b64url(signer.sign(message)))


def sign_orders(
    signer: Signer, intent_id: str, first_version: int, events: Sequence[EventData]
) -> list[EventData]:
    """``events`` (about to be appended to ``intent_id`` from ``first_version`` on) with every
    ``IntentDispatched`` signed for the event id it will be stored under."""
    assert first_version >= 1, "stream versions count from 1"
    return [
        sign_order(
            signer, intent_id=intent_id, event_id=event_id_for(intent_id, version), order=event
        )
        if isinstance(event, IntentDispatched)
        else event
        for version, event in enumerate(events, start=first_version)
    ]


def verify_order(
    verifier: Verifier, *, intent_id: str, event_id: str, order: IntentDispatched
) -> None:
    """Return if the engine signed exactly this order for this event of this intent.

    Raises ``UnsignedOrder``, ``UnknownKey`` or ``BadSignature`` (each with its ``code``).
    """
    if order.key_id is None or order.signature is None:
        raise UnsignedOrder("the work order carries no engine signature")
    try:
        signature = from_b64url(order.signature)
    except ValueError as exc:
        raise BadSignature(f"signature is not base64url: {exc}") from None
    message = order_signing_bytes(
        key_id=order.key_id, intent_id=intent_id, event_id=event_id, order=order
    )
    verifier.verify(order.key_id, message, signature)
