"""Ed25519 keys held in memory: the signer and the keyring every adapter builds on.

The ``cryptography`` package does the arithmetic (RFC 8032). Nothing here reads files or
logs key material; ``repr`` shows the key id only.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.signing.port import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    BadSignature,
    UnknownKey,
    key_id_for,
)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class Ed25519Signer:
    """A ``Signer`` over one private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_key = raw_public_key(private_key.public_key())
        self._key_id = key_id_for(self._public_key)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        signature = self._private_key.sign(message)
        assert len(signature) == SIGNATURE_BYTES
        return signature

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self._key_id!r})"


class Ed25519Keyring:
    """A ``Verifier`` over a fixed set of raw public keys, each under its own key id."""

    def __init__(self, public_keys: Iterable[bytes] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for raw in public_keys:
            if len(raw) != PUBLIC_KEY_BYTES:
                raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes")
            self._keys[key_id_for(raw)] = Ed25519PublicKey.from_public_bytes(raw)

    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify(self, key_id: str, message: bytes, signature: bytes) -> None:
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownKey(key_id)
        if len(signature) != SIGNATURE_BYTES:
            raise BadSignature(f"a signature is {SIGNATURE_BYTES} bytes, got {len(signature)}")
        try:
            key.verify(signature, message)
        except InvalidSignature:
            raise BadSignature(f"signature does not verify under key {key_id}") from None

    def __repr__(self) -> str:
        return f"Ed25519Keyring(key_ids={sorted(self._keys)!r})"
