"""Each endpoint's signing secret, derived from one master key; none is stored (ADR 0176).

secret = HMAC-SHA256(master key, "<endpoint id>:<rotation>"), shown as Standard Webhooks'
``whsec_<base64>``. The master key is 32 random bytes in ``<state_dir>/keys/webhooks.key``
(mode 0600), created on first use; the engine derives a secret to show it to the endpoint's
owner once, the dispatcher to sign. Losing the file changes every endpoint's secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from services.signing.file_keys import keys_dir
from services.signing.port import KeyFileError

MASTER_KEY_FILE: Final = "webhooks.key"
MASTER_KEY_BYTES: Final = 32
SECRET_PREFIX: Final = "whsec_"


class WebhookSecrets:
    """Derives endpoint secrets. Its ``repr`` never shows the key."""

    __slots__ = ("_key",)

    def __init__(self, master_key: bytes) -> None:
        assert len(master_key) == MASTER_KEY_BYTES, "a webhook master key is 32 bytes"
        self._key = master_key

    def secret_bytes(self, endpoint_id: str, rotation: int) -> bytes:
        message = f"{endpoint_id}:{rotation}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def secret(self, endpoint_id: str, rotation: int) -> str:
        """The secret as its owner is shown it, and as ``standardwebhooks.Webhook`` takes it."""
        raw = self.secret_bytes(endpoint_id, rotation)
        return SECRET_PREFIX + base64.b64encode(raw).decode()

    def __repr__(self) -> str:
        return "WebhookSecrets(<hidden>)"


class LazyWebhookSecrets(WebhookSecrets):
    """The master key in ``state_dir``, read (or made) the first time a secret is derived: an
    engine that never registers an endpoint never touches the file (the deterministic
    simulation runs the production engine with no state dir at all)."""

    __slots__ = ("_loaded", "_state_dir")

    def __init__(self, state_dir: Path) -> None:  # no key yet: nothing to pass up
        self._state_dir = state_dir
        self._loaded: WebhookSecrets | None = None

    def _secrets(self) -> WebhookSecrets:
        if self._loaded is None:
            self._loaded = load_or_create(self._state_dir)
        return self._loaded

    def secret_bytes(self, endpoint_id: str, rotation: int) -> bytes:
        return self._secrets().secret_bytes(endpoint_id, rotation)

    def secret(self, endpoint_id: str, rotation: int) -> str:
        return self._secrets().secret(endpoint_id, rotation)


def master_key_path(state_dir: Path) -> Path:
    return keys_dir(state_dir) / MASTER_KEY_FILE


def load_or_create(state_dir: Path) -> WebhookSecrets:
    """The master key in ``state_dir``, made on first use. Safe when several processes start at
    once: the file appears whole (a link of a finished temporary file) or not at all."""
    path = master_key_path(state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{MASTER_KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(MASTER_KEY_BYTES))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return load(path)


def load(path: Path) -> WebhookSecrets:
    """Raises ``KeyFileError`` for a missing, malformed or too widely readable key file."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"{path} is mode {stat.S_IMODE(mode):04o}; it must be 0600")
        with path.open("rb") as f:
            key = f.read(MASTER_KEY_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(key) != MASTER_KEY_BYTES:
        raise KeyFileError(f"{path} is not a webhook master key ({MASTER_KEY_BYTES} bytes)")
    return WebhookSecrets(key)
