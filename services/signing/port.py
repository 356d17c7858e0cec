"""The signing port: what the engine needs to sign and an executor needs to verify.

A ``Signer`` holds one private key and names it by ``key_id``; a ``Verifier`` holds public keys
by key id and checks a signature. The callers (``services/signing/orders.py``, the processor,
the executor) depend on these Protocols only, so a KMS or HSM adapter can replace the file
adapter without touching them. A key id is the first 16 hex digits of the SHA-256 of the raw
public key (``key_id_for``): anyone holding the public key can compute it, and a key file
that claims another id is refused.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final, Protocol, runtime_checkable

ALGORITHM: Final = "ed25519"
PUBLIC_KEY_BYTES: Final = 32  # RFC 8032: a raw Ed25519 public key
SIGNATURE_BYTES: Final = 64  # RFC 8032: R || S
KEY_ID_HEX_CHARS: Final = 16  # 64 bits: ids only name keys, they are not what is trusted


def key_id_for(public_key: bytes) -> str:
    """The id of a raw Ed25519 public key."""
    assert len(public_key) == PUBLIC_KEY_BYTES, "a raw Ed25519 public key is 32 bytes"
    return hashlib.sha256(public_key).hexdigest()[:KEY_ID_HEX_CHARS]


class SigningError(Exception):
    """Root of the signing errors; ``code`` names what went wrong."""

    code = "signing_error"


class UnknownKey(SigningError):
    """The verifier holds no public key with this id."""

    code = "unknown_key"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no trusted public key with id {key_id[:64]!r}")
        self.key_id = key_id


class BadSignature(SigningError):
    """The signature does not verify under the named key (tampered, or forged)."""

    code = "bad_signature"


class KeyFileError(SigningError):
    """A key file is missing, unreadable, malformed, or readable by others."""

    code = "key_file_error"


@runtime_checkable
class Signer(Protocol):
    """One private key. ``sign`` never fails for a valid key and never logs the key."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key, what verifiers are given."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        ...


@runtime_checkable
class Verifier(Protocol):
    """Trusted public keys by key id."""

    def key_ids(self) -> frozenset[str]:
        """The ids of the keys this verifier trusts now (empty: it can verify nothing)."""
        ...

    def verify(self, key_id: str, message: bytes, signature: bytes) -> None:
        """Return if ``signature`` is ``key_id``'s signature of ``message``.

        Raises ``UnknownKey`` for a key id it does not trust and ``BadSignature`` otherwise.
        """
        ...


def b64url(raw: bytes) -> str:
    """Base64url without padding (RFC 4648 section 5), how keys and signatures travel."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    """The inverse of ``b64url``; raises ``ValueError`` for anything ``b64url`` cannot give."""
    if len(text) > _B64_CHARS_MAX or not _B64URL.fullmatch(text):
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:  # non-canonical trailing bits
        raise ValueError("not canonical base64url")
    return raw


_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# Longer than any key or signature we handle: a bound before decoding untrusted text.
_B64_CHARS_MAX: Final = 128
