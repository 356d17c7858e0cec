"""HTTP API keys: a bearer token per credential, bound to that credential's role and id
(ADR 0171).

The token is 32 random bytes, URL-safe base64 with a ``ck_`` prefix (a scanner that finds one
in a log knows what it is). The registry keeps only its SHA-256, in hex: a leaked registry
(mode 0644, readable by the stack's processes) lets nobody in. A lookup hashes the presented
token and finds the credential by that hash (``services.identity.lookup``): the attacker
chooses the token, not its hash, so a lookup's timing tells them nothing about stored hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path
from typing import Final

TOKEN_PREFIX: Final = "ck_"
TOKEN_BYTES: Final = 32
# The HTTP file holds one token and a newline; a longer "token" is not one of ours, and a
# header value that long is refused before it is hashed.
TOKEN_CHARS_MAX: Final = 128
HTTP_SUFFIX: Final = ".http"
# Who gets a key: the principals a person or a program acts as. Executors, reconcilers, the
# engine and the gateway speak NATS only.
API_KEY_ROLES: Final = ("caller", "agent", "operator", "auditor")


def new_token() -> str:
    raw = secrets.token_bytes(TOKEN_BYTES)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(presented: str, stored: str) -> bool:
    return hmac.compare_digest(presented.encode(), stored.encode())


def http_path(seed_file: Path) -> Path:
    """Where ``corridor creds add --out FILE`` puts FILE's bearer token: ``FILE.http``."""
    return seed_file.with_name(seed_file.name + HTTP_SUFFIX)


def write_token(path: Path, token: str) -> None:
    """Create ``path`` holding ``token``, mode 0600, atomically; never overwrite a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".token-")  # created 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)  # fails if path exists
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_token(path: Path) -> str:
    with path.open() as f:
        return f.read(TOKEN_CHARS_MAX + 2).strip()
