"""Release keys: the private key file and the keyring of trusted public keys (ADR 0185, 0186).

The formats are the work-order signing key's (``services/signing/file_keys.py``, ADR 0063):
the private key is PKCS#8 PEM, mode 0600; the keyring is
``{"keys": [{"key_id", "algorithm": "ed25519", "public_key": "<base64url>", ...}]}``, and a key
id is the first 16 hex digits of SHA-256 of the raw public key. A release keyring entry may
also carry ``valid_from`` and ``valid_until`` (RFC 3339 times): a manifest created outside its
key's window is refused, so a retired key's public half can stay listed for old releases
without vouching for new ones.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from services.signing.ed25519 import Ed25519Signer
from services.signing.file_keys import KEYRING_BYTES_MAX, KEYRING_KEYS_MAX
from services.signing.port import (
    ALGORITHM,
    PUBLIC_KEY_BYTES,
    KeyFileError,
    b64url,
    from_b64url,
    key_id_for,
)

UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]


class ReleaseKeyEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key_id: str
    algorithm: str
    public_key: str  # base64url, unpadded, of the 32 raw bytes
    valid_from: UtcTime | None = None
    valid_until: UtcTime | None = None
    comment: str = ""


class ReleaseKeyring(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    keys: tuple[ReleaseKeyEntry, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TrustedKey:
    key_id: str
    public_key: Ed25519PublicKey
    valid_from: datetime | None
    valid_until: datetime | None

    def valid_at(self, when: datetime) -> bool:
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_until is None or when < self.valid_until


# A comment names the key's holder or ticket; anything longer is not a comment.
COMMENT_CHARS_MAX: Final = 200


def read_keyring(path: Path) -> dict[str, TrustedKey]:
    """The trusted release keys in ``path``, by key id. Raises ``KeyFileError`` if the file is
    missing, too large, malformed, empty, or names a key by an id that is not its own."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(KEYRING_BYTES_MAX + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read the release keyring {path}: {exc.strerror}") from None
    if len(raw) > KEYRING_BYTES_MAX:
        raise KeyFileError(f"{path} is larger than {KEYRING_BYTES_MAX} bytes")
    try:
        document = msgspec.json.decode(raw, type=ReleaseKeyring)
    except ValueError as exc:  # msgspec.DecodeError is a ValueError
        raise KeyFileError(f"{path} is not a release keyring: {exc}") from None
    if not document.keys:
        raise KeyFileError(f"{path} lists no public key")
    if len(document.keys) > KEYRING_KEYS_MAX:
        raise KeyFileError(f"{path} lists {len(document.keys)} keys, limit is {KEYRING_KEYS_MAX}")
    trusted: dict[str, TrustedKey] = {}
    for entry in document.keys:
        if entry.algorithm != ALGORITHM:
            raise KeyFileError(f"{path}: key {entry.key_id!r} is {entry.algorithm!r}, not ed25519")
        if len(entry.comment) > COMMENT_CHARS_MAX:
            raise KeyFileError(f"{path}: key {entry.key_id!r}: comment over {COMMENT_CHARS_MAX}")
        try:
            raw_key = from_b64url(entry.public_key)
        except ValueError as exc:
            raise KeyFileError(f"{path}: key {entry.key_id!r}: {exc}") from None
        if len(raw_key) != PUBLIC_KEY_BYTES or key_id_for(raw_key) != entry.key_id:
            raise KeyFileError(f"{path}: key id {entry.key_id!r} is not its key's id")
        trusted[entry.key_id] = TrustedKey(
            key_id=entry.key_id,
            public_key=Ed25519PublicKey.from_public_bytes(raw_key),
            valid_from=entry.valid_from,
            valid_until=entry.valid_until,
        )
    return trusted


def generate_key(out: Path) -> Ed25519Signer:
    """A new release key in ``out`` (PKCS#8 PEM, mode 0600). Never overwrites a file."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{out} exists: keygen never overwrites a key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return Ed25519Signer(key)


def add_to_keyring(
    path: Path, public_key: bytes, *, valid_from: datetime | None, comment: str = ""
) -> ReleaseKeyEntry:
    """List ``public_key`` in the keyring at ``path`` (created if absent, kept if listed)."""
    entry = ReleaseKeyEntry(
        key_id=key_id_for(public_key),
        algorithm=ALGORITHM,
        public_key=b64url(public_key),
        valid_from=valid_from,
        comment=comment[:COMMENT_CHARS_MAX],
    )
    current = ReleaseKeyring()
    if path.exists():
        read_keyring(path)  # refuse to extend a file that is not a valid keyring
        current = msgspec.json.decode(path.read_bytes(), type=ReleaseKeyring)
    if any(k.key_id == entry.key_id for k in current.keys):
        return entry
    document = ReleaseKeyring(keys=(*current.keys, entry))
    data = msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".release-keys.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # public on purpose: it is published with every release
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return entry
