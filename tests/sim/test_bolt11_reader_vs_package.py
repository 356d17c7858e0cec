"""The fast reader agrees with the `bolt11` package (the reference) on random invoices."""

from __future__ import annotations

import hashlib

import bolt11 as reference
from hypothesis import given
from hypothesis import strategies as st

from services.bolt11.codec import decode_invoice, encode_invoice, peek_invoice, pubkey_of

KEYS = [hashlib.sha256(f"k{i}".encode()).digest() for i in range(4)]


@given(
    key=st.sampled_from(KEYS),
    network=st.sampled_from(["mainnet", "testnet", "signet", "regtest"]),
    amount_msat=st.none() | st.integers(1, 21_000_000 * 10**11 - 1).filter(lambda a: a % 10**14),
    preimage=st.binary(min_size=32, max_size=32),
    description=st.text(max_size=300),
    created_at_s=st.integers(1_500_000_000, 2_000_000_000),
    expiry_s=st.integers(1, 10**7),
    cltv=st.integers(1, 2016),
)
def test_reader_matches_the_reference_package(
    key: bytes, network: str, amount_msat: int | None, preimage: bytes, description: str,
    created_at_s: int, expiry_s: int, cltv: int,
) -> None:  # fmt: skip
    payment_hash = hashlib.sha256(preimage).hexdigest()
    text = encode_invoice(
        privkey=key, network=network, payment_hash=payment_hash,
        payment_secret=hashlib.sha256(preimage + b"s").hexdigest(), amount_msat=amount_msat,
        description=description, created_at_s=created_at_s, expiry_s=expiry_s,
        min_final_cltv_expiry=cltv,
    )  # fmt: skip
    ours = decode_invoice(text)
    theirs = reference.decode(text)
    assert ours.payment_hash == theirs.payment_hash == payment_hash
    assert ours.destination == theirs.payee == pubkey_of(key)
    assert ours.amount_msat == (int(theirs.amount_msat) if theirs.amount_msat else None)
    assert ours.amount_msat == amount_msat
    assert ours.created_at_s == theirs.date == created_at_s
    assert ours.expiry_s == theirs.expiry == expiry_s
    assert ours.description == theirs.description == description
    assert ours.min_final_cltv_expiry == theirs.min_final_cltv_expiry == cltv
    assert ours.network == network
    assert peek_invoice(text) == (payment_hash, amount_msat)


def test_peek_agrees_with_the_full_decode_on_every_valid_vector() -> None:
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2].parent / "shared/conformance/bolt11/vectors.json"
    for vector in json.loads(path.read_text()):
        if vector["valid"]:
            decoded = decode_invoice(vector["invoice"])
            assert peek_invoice(vector["invoice"]) == (decoded.payment_hash, decoded.amount_msat)


@given(st.lists(st.integers(0, 31), max_size=800))
def test_table_polymod_equals_the_reference(values: list[int]) -> None:
    import bech32

    from services.bolt11.reader import bech32_polymod

    assert bech32_polymod(values) == bech32.bech32_polymod(values)
