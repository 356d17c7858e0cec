"""Deterministic keysend preimages, so that a restarted worker reuses the same payment hash.

preimage = HMAC-SHA256(secret, f"{intent_id}:{attempt}"); hash = SHA256(preimage). Every worker
that drives one node must hold the same secret: see docs/adr/0202-deterministic-keysend-preimage.md.
The secret never leaves this module's callers in a log line or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

SECRET_BYTES: Final = 32
SECRET_FILE_NAME: Final = "executor-keysend.secret"


def keysend_preimage(secret: bytes, intent_id: str, attempt: int) -> tuple[str, str]:
    """(preimage hex, payment hash hex) for one attempt of one intent."""
    assert len(secret) == SECRET_BYTES, "the keysend secret must be 32 bytes"
    assert attempt >= 1, "attempts count from 1"
    preimage = hmac.new(secret, f"{intent_id}:{attempt}".encode(), hashlib.sha256).digest()
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret (hex) at ``path``, creating it with mode 0600 if it does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two workers starting at once must not write two different secrets.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(SECRET_BYTES) + "\n")
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"keysend secret file {path} is not hex") from None
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"keysend secret file {path} must hold {SECRET_BYTES} bytes")
    return secret
