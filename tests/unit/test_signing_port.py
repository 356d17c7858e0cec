"""The signing port's contract: one test body, run against every adapter.

A KMS or HSM adapter joins the ``pair`` fixture's list and must pass the same tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.signing.file_keys import (
    PUBLIC_KEYS_FILE,
    FileKeyring,
    load_or_create_signer,
)
from services.signing.port import (
    KEY_ID_HEX_CHARS,
    SIGNATURE_BYTES,
    BadSignature,
    Signer,
    UnknownKey,
    Verifier,
    b64url,
    from_b64url,
    key_id_for,
)

Pair = tuple[Signer, Verifier]


def _in_memory(_: Path) -> Pair:
    signer = Ed25519Signer.generate()
    return signer, Ed25519Keyring([signer.public_key])


def _files(tmp_path: Path) -> Pair:
    signer = load_or_create_signer(tmp_path / "keys")
    return signer, FileKeyring(tmp_path / "keys" / PUBLIC_KEYS_FILE)


ADAPTERS: dict[str, Callable[[Path], Pair]] = {"in_memory": _in_memory, "files": _files}


@pytest.fixture(params=sorted(ADAPTERS))
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    return ADAPTERS[request.param](tmp_path)


def test_the_adapters_implement_the_port(pair: Pair) -> None:
    signer, verifier = pair
    assert isinstance(signer, Signer) and isinstance(verifier, Verifier)


def test_a_key_id_is_derived_from_the_public_key(pair: Pair) -> None:
    signer, verifier = pair
    assert signer.key_id == key_id_for(signer.public_key)
    assert len(signer.key_id) == KEY_ID_HEX_CHARS and int(signer.key_id, 16) >= 0
    assert signer.key_id in verifier.key_ids()


def test_a_signature_verifies_under_its_key(pair: Pair) -> None:
    signer, verifier = pair
    signature = signer.sign(b"pay 50000 msat")
    assert len(signature) == SIGNATURE_BYTES
    verifier.verify(signer.key_id, b"pay 50000 msat", signature)


def test_a_changed_message_or_signature_is_refused(pair: Pair) -> None:
    signer, verifier = pair
    signature = signer.sign(b"pay 50000 msat")
    with pytest.raises(BadSignature):
        verifier.verify(signer.key_id, b"pay 7777000 msat", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(BadSignature):
        verifier.verify(signer.key_id, b"pay 50000 msat", flipped)
    with pytest.raises(BadSignature):
        verifier.verify(signer.key_id, b"pay 50000 msat", signature[:-1])
    with pytest.raises(BadSignature):
        verifier.verify(signer.key_id, b"pay 50000 msat", b"")


def test_another_keys_signature_under_this_key_id_is_refused(pair: Pair) -> None:
    signer, verifier = pair
    forger = Ed25519Signer.generate()
    with pytest.raises(BadSignature):
        verifier.verify(signer.key_id, b"pay", forger.sign(b"pay"))


def test_an_unknown_key_id_is_refused_as_unknown(pair: Pair) -> None:
    _, verifier = pair
    forger = Ed25519Signer.generate()
    with pytest.raises(UnknownKey) as refused:
        verifier.verify(forger.key_id, b"pay", forger.sign(b"pay"))
    assert refused.value.code == "unknown_key" and refused.value.key_id == forger.key_id


def test_no_key_material_in_a_repr(pair: Pair) -> None:
    signer, verifier = pair
    for text in (repr(signer), repr(verifier)):
        assert signer.key_id in text and b64url(signer.public_key) not in text


@pytest.mark.parametrize("text", ["a=", "a+b", "a/b", "a b", "x" * 200, "AB"])
def test_base64url_refuses_what_it_never_writes(text: str) -> None:
    with pytest.raises(ValueError):
        from_b64url(text)


def test_base64url_round_trips() -> None:
    for raw in (b"", b"\x00", bytes(range(64))):
        assert from_b64url(b64url(raw)) == raw
