"""The default signing adapter: Ed25519 keys in files under the stack's state directory.

``<state_dir>/keys/`` (mode 0700) holds

- ``engine-signing.key``: the engine's private key, PKCS#8 PEM, mode 0600, created on first
  use (``load_or_create_signer``). A key file that group or others can read is refused, as
  ssh refuses one: a key that may have leaked is not used to sign.
- ``engine-signing.pub.json``: the public keys executors trust, by key id (mode 0644, public):
  ``{"keys": [{"key_id": "<16 hex>", "algorithm": "ed25519", "public_key": "<base64url>"}]}``.
  The engine adds its own key when it first loads it. To rotate, an operator adds the new
  key's entry to every executor's copy *before* an engine signs with it, and removes the old
  one after the orders it signed are drained (ADR 0063).

Executors on other hosts are given a copy of the public file only; the private key never
leaves the engine's host. A KMS or HSM adapter replaces this module, not its callers.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.signing.port import (
    ALGORITHM,
    PUBLIC_KEY_BYTES,
    KeyFileError,
    b64url,
    from_b64url,
    key_id_for,
)

KEYS_DIR: Final = "keys"
PRIVATE_KEY_FILE: Final = "engine-signing.key"
PUBLIC_KEYS_FILE: Final = "engine-signing.pub.json"
# A PEM Ed25519 key is about 120 bytes; a keyring of a few keys a few hundred. Anything far
# larger is not ours, and is refused before it is parsed.
KEY_FILE_BYTES_MAX: Final = 4096
KEYRING_BYTES_MAX: Final = 64 * 1024
# Keys one keyring may hold: the current key and the ones being rotated out.
KEYRING_KEYS_MAX: Final = 16
# An order under an unknown key id re-reads the keyring (a rotation may have added it), but
# no more often than this: a flood of forged key ids must not turn into a flood of file reads.
KEYRING_RELOAD_S_MIN: Final = 1.0


class PublicKeyEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key_id: str
    algorithm: str
    public_key: str  # base64url, unpadded, of the 32 raw bytes


class PublicKeys(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    keys: tuple[PublicKeyEntry, ...] = ()


def keys_dir(state_dir: Path) -> Path:
    """Where a stack keeps its signing keys."""
    return state_dir / KEYS_DIR


def load_or_create_signer(directory: Path) -> Ed25519Signer:
    """The engine's signer from ``directory``, creating the key (and listing its public half in
    the public keyring) on first use. Safe when several engines start at once."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / PRIVATE_KEY_FILE
    if not path.exists():
        _create_private_key(path)
    signer = load_signer(path)
    _publish(directory / PUBLIC_KEYS_FILE, signer.public_key)
    return signer


def load_signer(path: Path) -> Ed25519Signer:
    """Raises ``KeyFileError`` for a missing, malformed or too widely readable key file."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path} is mode {stat.S_IMODE(mode):04o}; a private key must be 0600"
            )
        pem = _read_bounded(path, KEY_FILE_BYTES_MAX)
        key = load_pem_private_key(pem, password=None)
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise KeyFileError(f"{path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return Ed25519Signer(key)


def read_public_keys(path: Path) -> Ed25519Keyring:
    """The keyring in ``path``. Raises ``KeyFileError`` if it is missing, malformed, names a key
    by an id that is not its own, or holds no key at all (such a verifier trusts nothing)."""
    try:
        raw = _read_bounded(path, KEYRING_BYTES_MAX)
        document = msgspec.json.decode(raw, type=PublicKeys)
    except OSError as exc:
        raise KeyFileError(f"cannot read the engine's public keys {path}: {exc.strerror}") from None
    except ValueError as exc:  # msgspec.DecodeError is a ValueError
        raise KeyFileError(f"{path} is not a public keyring: {exc}") from None
    if not document.keys:
        raise KeyFileError(f"{path} lists no public key")
    if len(document.keys) > KEYRING_KEYS_MAX:
        raise KeyFileError(f"{path} lists {len(document.keys)} keys, limit is {KEYRING_KEYS_MAX}")
    public_keys = []
    for entry in document.keys:
        if entry.algorithm != ALGORITHM:
            raise KeyFileError(f"{path}: key {entry.key_id!r} is {entry.algorithm!r}, not ed25519")
        try:
            public_key = from_b64url(entry.public_key)
            if _key_id_of(public_key) != entry.key_id:
                raise KeyFileError(f"{path}: key id {entry.key_id!r} is not its key's id")
        except ValueError as exc:
            raise KeyFileError(f"{path}: key {entry.key_id!r}: {exc}") from None
        public_keys.append(public_key)
    return Ed25519Keyring(public_keys)


def _key_id_of(public_key: bytes) -> str:
    """``key_id_for`` for bytes read from outside: a wrong length is a ``ValueError``."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(
            f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}"
        )
    return key_id_for(public_key)


class FileKeyring:
    """A ``Verifier`` over the public keyring file, re-read when an unknown key id shows up
    (at most every ``reload_s_min``), so a rotation needs no executor restart."""

    def __init__(self, path: Path, *, reload_s_min: float = KEYRING_RELOAD_S_MIN) -> None:
        self._path = path
        self._reload_s_min = reload_s_min
        self._keyring = read_public_keys(path)  # at start, a bad file stops the executor
        self._loaded_at_s = time.monotonic()

    def key_ids(self) -> frozenset[str]:
        return self._keyring.key_ids()

    def verify(self, key_id: str, message: bytes, signature: bytes) -> None:
        if key_id not in self._keyring.key_ids():
            self._reload()
        self._keyring.verify(key_id, message, signature)

    def _reload(self) -> None:
        now_s = time.monotonic()
        if now_s - self._loaded_at_s < self._reload_s_min:
            return
        self._loaded_at_s = now_s
        # A file broken while running keeps the keys already trusted: refusing every order
        # because of a bad edit would terminate good work.
        with contextlib.suppress(KeyFileError):
            self._keyring = read_public_keys(self._path)

    def __repr__(self) -> str:
        return f"FileKeyring(path={str(self._path)!r}, key_ids={sorted(self.key_ids())!r})"


def _create_private_key(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".engine-signing.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        # A hard link appears whole or not at all and never replaces a file: of two engines
        # creating a key at once, one wins and both then read the winner's key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _publish(path: Path, public_key: bytes) -> None:
    """List ``public_key`` in the keyring at ``path`` (kept as it is if already listed)."""
    entry = PublicKeyEntry(
        key_id=key_id_for(public_key), algorithm=ALGORITHM, public_key=b64url(public_key)
    )
    current = PublicKeys()
    if path.exists():
        try:
            current = msgspec.json.decode(_read_bounded(path, KEYRING_BYTES_MAX), type=PublicKeys)
        except (OSError, ValueError) as exc:  # msgspec.DecodeError is a ValueError
            raise KeyFileError(f"{path} is not a public keyring: {exc}") from None
    if entry in current.keys:
        return
    document = PublicKeys(keys=(*current.keys, entry))
    data = msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".engine-signing.pub.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # public on purpose: executors read it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_bounded(path: Path, bytes_max: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(bytes_max + 1)
    if len(data) > bytes_max:
        raise ValueError(f"{path} is larger than {bytes_max} bytes")
    return data


def main(argv: list[str] | None = None) -> int:
    """``python -m services.signing.file_keys STATE_DIR``: create the engine's key if there is
    none (without starting an engine, as an upgrade needs: ADR 0063), and say where it is."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m services.signing.file_keys STATE_DIR", file=sys.stderr)
        return 2
    directory = keys_dir(Path(args[0]))
    try:
        signer = load_or_create_signer(directory)
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"key_id={signer.key_id} public_keys={directory / PUBLIC_KEYS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
