"""BOLT 11 spec vectors and round trips through our encoder/decoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bolt11 as b11_package
import pytest

from services.bolt11.codec import (
    InvoiceDecodeError,
    InvoiceErrorCode,
    decode_invoice,
    encode_invoice,
    payment_hash_of,
    pubkey_of,
)

VECTORS_PATH = (
    Path(__file__).parents[2] / ".." / "shared" / "conformance" / "bolt11" / "vectors.json"
)


def _vectors() -> list[dict[str, Any]]:
    if not VECTORS_PATH.exists():
        return []
    vectors: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return vectors


VECTORS = _vectors()
needs_vectors = pytest.mark.skipif(
    not VECTORS, reason=f"shared conformance vectors not found at {VECTORS_PATH.resolve()}"
)


@needs_vectors
def test_all_26_vectors_are_present() -> None:
    assert len(VECTORS) == 26
    assert sum(v["valid"] for v in VECTORS) == 16


@needs_vectors
@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["valid"]], ids=lambda v: str(v["spec_line"])
)
def test_valid_vector_decodes_with_recorded_fields(vector: dict[str, Any]) -> None:
    decoded = decode_invoice(vector["invoice"])
    assert decoded.network == vector["network"]
    assert decoded.amount_msat == vector["amount_msat"]
    assert decoded.payment_hash == vector["payment_hash"]
    assert (decoded.description or None) == (vector["description"] or None)
    assert len(decoded.destination) == 66


@needs_vectors
@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if not v["valid"]], ids=lambda v: str(v["spec_line"])
)
def test_invalid_vector_is_rejected(vector: dict[str, Any]) -> None:
    with pytest.raises(InvoiceDecodeError) as info:
        decode_invoice(vector["invoice"])
    assert isinstance(info.value.code, InvoiceErrorCode)


@needs_vectors
def test_reader_rules_catch_what_the_package_accepts() -> None:
    by_note = {v["note"]: v for v in VECTORS if not v["valid"]}
    sub_msat = next(v for note, v in by_note.items() if "sub-millisatoshi" in note)
    feature = next(v for note, v in by_note.items() if "feature" in note.lower())
    b11_package.decode(sub_msat["invoice"])  # the package alone lets both through
    b11_package.decode(feature["invoice"])
    with pytest.raises(InvoiceDecodeError) as info:
        decode_invoice(sub_msat["invoice"])
    assert info.value.code is InvoiceErrorCode.BAD_AMOUNT
    with pytest.raises(InvoiceDecodeError) as info:
        decode_invoice(feature["invoice"])
    assert info.value.code is InvoiceErrorCode.UNKNOWN_FEATURE


PRIVKEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")


@pytest.mark.parametrize(
    ("network", "prefix"),
    [("regtest", "lnbcrt"), ("signet", "lntbs"), ("testnet", "lntb"), ("mainnet", "lnbc")],
)
@pytest.mark.parametrize(
    "amount_msat", [None, 1, 10, 1000, 123_456_789, 100_000_000_000, 2_099_999_999_999_999]
)
def test_encode_decode_round_trip(network: str, prefix: str, amount_msat: int | None) -> None:
    preimage = "11" * 32
    encoded = encode_invoice(
        privkey=PRIVKEY,
        network=network,
        payment_hash=payment_hash_of(preimage),
        payment_secret="22" * 32,
        amount_msat=amount_msat,
        description="round trip",
        created_at_s=1_700_000_000,
        expiry_s=600,
    )
    assert encoded.startswith(prefix)
    decoded = decode_invoice(encoded)
    assert decoded.network == network
    assert decoded.amount_msat == amount_msat
    assert decoded.payment_hash == payment_hash_of(preimage)
    assert decoded.destination == pubkey_of(PRIVKEY)
    assert (decoded.created_at_s, decoded.expiry_s) == (1_700_000_000, 600)
    assert decoded.description == "round trip"
    # An independent reader (the package itself) agrees on the signer.
    assert b11_package.decode(encoded).payee == pubkey_of(PRIVKEY)


def test_feature_and_expiry_fields_match_the_package_reading() -> None:
    encoded = encode_invoice(
        privkey=PRIVKEY,
        network="regtest",
        payment_hash="33" * 32,
        payment_secret="22" * 32,
        amount_msat=2_100_000_000_000_000,  # 21000 BTC: the package's own encoder gets it wrong
        description="ünïcode",
        created_at_s=1_700_000_000,
        expiry_s=86_400,
        min_final_cltv_expiry=144,
    )
    reference = b11_package.decode(encoded)
    assert reference.amount_msat == 2_100_000_000_000_000
    assert reference.payment_secret == "22" * 32
    assert reference.description == "ünïcode"
    assert (reference.expiry, reference.min_final_cltv_expiry) == (86_400, 144)
    assert reference.features is not None
    assert set(reference.features.readable) == {"var_onion_optin", "payment_secret"}
    assert all(state == "required" for state in reference.features.readable.values())


def test_tampered_invoice_is_rejected_not_misread() -> None:
    encoded = encode_invoice(
        privkey=PRIVKEY,
        network="regtest",
        payment_hash="33" * 32,
        payment_secret="22" * 32,
        amount_msat=5000,
        description="x",
        created_at_s=1_700_000_000,
        expiry_s=600,
    )
    flipped = encoded[:20] + ("q" if encoded[20] != "q" else "p") + encoded[21:]
    with pytest.raises(InvoiceDecodeError):
        decode_invoice(flipped)


@pytest.mark.parametrize("text", ["", "lnbc", "not an invoice", "LNBCrt1", "lnbc1" + "q" * 8000])
def test_garbage_is_a_typed_error(text: str) -> None:
    with pytest.raises(InvoiceDecodeError):
        decode_invoice(text)
