"""Signed work orders: the canonical bytes, what a signature binds, and version 1 events."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import rfc8785

from schemas import events as ev
from schemas.limits import AMOUNT_MSAT_MAX
from services.engine.event_codec import to_domain
from services.engine.ids import event_id_for
from services.eventstore.port import StoredEvent
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.signing.orders import (
    ORDER_SIGNING_CONTEXT,
    SIGNATURE_FIELDS,
    SIGNED_FIELDS,
    UnsignedOrder,
    order_signing_bytes,
    sign_order,
    sign_orders,
    verify_order,
)
from services.signing.port import BadSignature, UnknownKey

SIGNER = Ed25519Signer.generate()
KEYRING = Ed25519Keyring([SIGNER.public_key])
INTENT = "5f0c6a3e-2f6b-5a4e-9c1d-0e7f4b2a1c3d"
EVENT = event_id_for(INTENT, 4)
INVOICE_ORDER = ev.IntentDispatched(
    attempt=1,
    region="us",
    node="us-lnd",
    amount_msat=50_000,
    max_fee_msat=1_000,
    payment_request="lnbcrt500n1pexample",
    payment_hash="ab" * 32,
    pay_timeout_s=60,
    invoice_has_amount=True,
)
KEYSEND_ORDER = ev.IntentDispatched(
    attempt=2, region="eu", node="eu-lnd", amount_msat=AMOUNT_MSAT_MAX, max_fee_msat=0,
    destination="02" + "11" * 32, pay_timeout_s=30,
)  # fmt: skip


def _signed(order: ev.IntentDispatched = INVOICE_ORDER) -> ev.IntentDispatched:
    return sign_order(SIGNER, intent_id=INTENT, event_id=EVENT, order=order)


def test_the_canonical_bytes_are_the_documented_array() -> None:
    got = order_signing_bytes(key_id="0123456789abcdef", intent_id="i-1", event_id="e-1",
                              order=INVOICE_ORDER)  # fmt: skip
    assert got == (
        b'["corridor/work-order/v1","0123456789abcdef","i-1","e-1",1,"us","us-lnd",50000,1000,'
        b'"lnbcrt500n1pexample",null,"' + b"ab" * 32 + b'",60,true]'
    )
    big = order_signing_bytes(key_id="k", intent_id="i", event_id="e", order=KEYSEND_ORDER)
    assert b',2100000000000000000,0,null,"02' in big  # integers past 2**53, exact


def test_the_canonical_bytes_are_jcs_wherever_jcs_can_say_them() -> None:
    for order in (INVOICE_ORDER, msgspec.structs.replace(KEYSEND_ORDER, amount_msat=2**53 - 1)):
        values = [ORDER_SIGNING_CONTEXT, "k\u00e9y\n\"", INTENT, EVENT,
                  *(getattr(order, name) for name in SIGNED_FIELDS)]  # fmt: skip
        got = order_signing_bytes(key_id=values[1], intent_id=INTENT, event_id=EVENT, order=order)
        assert got == rfc8785.dumps(values)


def test_every_field_of_the_order_is_signed_or_is_the_signature() -> None:
    # A new IntentDispatched field fails here until the canonical bytes (and the ADR) say
    # whether it is signed: nothing travels unsigned by accident.
    assert (*SIGNED_FIELDS, *SIGNATURE_FIELDS) == ev.IntentDispatched.__struct_fields__


def test_a_signed_order_verifies() -> None:
    for order in (INVOICE_ORDER, KEYSEND_ORDER):
        signed = _signed(order)
        assert signed.key_id == SIGNER.key_id and signed.signature is not None
        assert len(signed.signature) == 86  # 64 bytes, unpadded base64url
        verify_order(KEYRING, intent_id=INTENT, event_id=EVENT, order=signed)


CHANGES: dict[str, Any] = {
    "attempt": 2, "region": "eu", "node": "us-cln", "amount_msat": 7_777_000,
    "max_fee_msat": 1_000_000, "payment_request": "lnbcrt1attacker", "destination": "03" * 33,
    "payment_hash": "cd" * 32, "pay_timeout_s": 3600, "invoice_has_amount": False,
}  # fmt: skip


@pytest.mark.parametrize("field", SIGNED_FIELDS)
def test_changing_any_signed_field_breaks_the_signature(field: str) -> None:
    tampered = msgspec.structs.replace(_signed(), **{field: CHANGES[field]})
    with pytest.raises(BadSignature):
        verify_order(KEYRING, intent_id=INTENT, event_id=EVENT, order=tampered)


def test_the_signature_binds_the_intent_and_the_event() -> None:
    signed = _signed()
    with pytest.raises(BadSignature):
        verify_order(KEYRING, intent_id="another-intent", event_id=EVENT, order=signed)
    with pytest.raises(BadSignature):
        verify_order(KEYRING, intent_id=INTENT, event_id=event_id_for(INTENT, 5), order=signed)


def test_unsigned_unknown_and_malformed_signatures_are_refused() -> None:
    with pytest.raises(UnsignedOrder) as unsigned:
        verify_order(KEYRING, intent_id=INTENT, event_id=EVENT, order=INVOICE_ORDER)
    assert unsigned.value.code == "unsigned_work_order"
    only_key = msgspec.structs.replace(INVOICE_ORDER, key_id=SIGNER.key_id)
    with pytest.raises(UnsignedOrder):
        verify_order(KEYRING, intent_id=INTENT, event_id=EVENT, order=only_key)
    forged = sign_order(Ed25519Signer.generate(), intent_id=INTENT, event_id=EVENT,
                        order=INVOICE_ORDER)  # fmt: skip
    with pytest.raises(UnknownKey):
        verify_order(KEYRING, intent_id=INTENT, event_id=EVENT, order=forged)
    relabelled = msgspec.structs.replace(forged, key_id=SIGNER.key_id)
    with pytest.raises(BadSignature):
        verify_order(KEYRING, intent_id=INTENT, event_id=EVENT, order=relabelled)
    for junk in ("not base64!", "AB", ""):
        garbled = msgspec.structs.replace(_signed(), signature=junk)
        with pytest.raises(BadSignature):
            verify_order(KEYRING, intent_id=INTENT, event_id=EVENT, order=garbled)


def test_sign_orders_signs_each_dispatch_for_the_event_id_it_will_have() -> None:
    routed = ev.IntentRouted(attempt=1, region="us", node="us-lnd", reason="first")
    signed = sign_orders(SIGNER, INTENT, 3, [routed, INVOICE_ORDER])
    assert signed[0] is routed
    dispatched = signed[1]
    assert isinstance(dispatched, ev.IntentDispatched)
    verify_order(KEYRING, intent_id=INTENT, event_id=event_id_for(INTENT, 4), order=dispatched)
    assert sign_orders(SIGNER, INTENT, 1, [routed]) == [routed]


def _stored(version: int, payload: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        position=9, event_id=EVENT, stream_id=INTENT, stream_version=4, type="IntentDispatched",
        schema_version=version, payload=payload, metadata={}, recorded_at_ms=0,
        prev_hash=bytes(32), hash=bytes(32),
    )  # fmt: skip


def test_a_version_1_dispatch_reads_as_version_2_without_a_signature() -> None:
    v1_payload = msgspec.to_builtins(INVOICE_ORDER)
    del v1_payload["key_id"], v1_payload["signature"]
    assert ev.IntentDispatched.VERSION == 2
    assert to_domain(_stored(1, v1_payload)) == INVOICE_ORDER
    signed = _signed()
    assert to_domain(_stored(2, msgspec.to_builtins(signed))) == signed
