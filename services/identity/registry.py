"""The credential registry: every NATS user Corridor accepts, by role and id.

NATS does not tell a subscriber who published a message. Identity is therefore the subject's
last token (``...submit.<caller_id>``, ``...outcome.<node>``), made trustworthy by each
credential's publish permissions, which the server enforces (ADR 0060). What a subject token
cannot carry (a caller's kind, an executor's region and node) comes from this registry, never
from a payload.

The file holds public keys only; seeds live beside it, one file per credential, mode 0600.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Literal

import msgspec

Role = Literal[
    "caller", "agent", "operator", "executor", "auditor", "engine", "reconciler", "gateway"
]
CallerKind = Literal["service", "human", "agent"]

ROLES: tuple[Role, ...] = (
    "caller",
    "agent",
    "operator",
    "executor",
    "auditor",
    "engine",
    "reconciler",
    # The HTTP API's process: forwards the commands of the callers and operators it
    # authenticated by their API keys (ADR 0172).
    "gateway",
)
# An id is a NATS subject token: no dots, wildcards or spaces; bounded like every input.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
REGISTRY_FILE = "credentials.json"
AUTH_DIR = "auth"


class InvalidCredential(ValueError):
    """A credential that breaks the registry's rules (bad id, missing region/node...)."""


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    role: Role
    # The nkey user public key ("U..."), what nats-server checks the client's signature against.
    public_key: str
    # Callers and agents: what kind of principal (policy tiers depend on it). Agents are "agent".
    kind: CallerKind | None = None
    # Executors: the one node whose orders they take and whose outcomes and health they report.
    region: str | None = None
    node: str | None = None
    revoked: bool = False
    created_at_ms: int = 0
    # SHA-256 (hex) of the credential's HTTP API key, if it has one (ADR 0171): the same
    # identity and role over HTTP. The token itself is never stored here.
    api_key_sha256: str | None = None
    # When the credential stops working (ms since the epoch), if it was issued with an expiry:
    # the engine and the HTTP API refuse it from then on, and the server's users list drops it
    # at its next reload. ``corridor_credential_expiry_timestamp_seconds`` warns before.
    expires_at_ms: int | None = None

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms

    def check(self) -> None:
        if not ID_PATTERN.match(self.id):
            raise InvalidCredential(f"id {self.id!r} must match {ID_PATTERN.pattern}")
        if not self.public_key.startswith("U"):
            raise InvalidCredential("public_key must be an nkey user key (U...)")
        if self.role in ("executor", "reconciler"):
            # A reconciler, like an executor, speaks for the one node it reconciles (ADR 0151).
            if not (self.region and self.node):
                raise InvalidCredential(f"an {self.role} credential names its region and node")
            if not (ID_PATTERN.match(self.region) and ID_PATTERN.match(self.node)):
                raise InvalidCredential("region and node must be subject tokens")
            if self.id != self.node:
                raise InvalidCredential(f"an {self.role}'s id is its node's name")
        elif self.region is not None or self.node is not None:
            raise InvalidCredential("only executors and reconcilers name a region and node")
        if self.role == "caller" and self.kind not in ("service", "human"):
            raise InvalidCredential("a caller's kind is service or human")
        if self.role == "agent" and self.kind != "agent":
            raise InvalidCredential("an agent's kind is agent")
        if self.role not in ("caller", "agent") and self.kind is not None:
            raise InvalidCredential("only callers and agents have a kind")
        if self.api_key_sha256 is not None and not _SHA256_HEX.match(self.api_key_sha256):
            raise InvalidCredential("api_key_sha256 must be 64 lowercase hex digits")


class Registry(msgspec.Struct, frozen=True, kw_only=True):
    credentials: tuple[Credential, ...] = ()

    def find(self, role: Role, ident: str) -> Credential | None:
        """The live (not revoked) credential of ``role`` named ``ident``, if any."""
        for credential in self.credentials:
            if credential.role == role and credential.id == ident and not credential.revoked:
                return credential
        return None

    def by_public_key(self, public_key: str) -> Credential | None:
        """The credential holding ``public_key``, revoked or not: a key is issued once."""
        for credential in self.credentials:
            if credential.public_key == public_key:
                return credential
        return None

    def by_api_key_hash(self, digest: str) -> Credential | None:
        """The live credential whose API key hashes to ``digest``, by a scan with constant-time
        compares (the HTTP server uses the indexed ``services.identity.lookup`` instead)."""
        from services.identity.api_keys import same_hash

        for credential in self.credentials:
            stored = credential.api_key_sha256
            if stored is not None and not credential.revoked and same_hash(digest, stored):
                return credential
        return None

    def live(self, now_ms: int | None = None) -> tuple[Credential, ...]:
        """Not revoked, and (given ``now_ms``) not expired."""
        return tuple(
            c for c in self.credentials
            if not c.revoked and (now_ms is None or not c.expired(now_ms))
        )  # fmt: skip

    def with_added(self, credential: Credential) -> Registry:
        credential.check()
        if self.find(credential.role, credential.id) is not None:
            raise InvalidCredential(f"{credential.role} {credential.id} already exists")
        return Registry(credentials=(*self.credentials, credential))

    def with_revoked(self, role: Role, ident: str) -> Registry:
        if self.find(role, ident) is None:
            raise InvalidCredential(f"no live {role} {ident}")
        return Registry(
            credentials=tuple(
                msgspec.structs.replace(c, revoked=True) if c.role == role and c.id == ident else c
                for c in self.credentials
            )
        )


def registry_path(state_dir: Path) -> Path:
    return state_dir / AUTH_DIR / REGISTRY_FILE


def load_registry(path: Path) -> Registry:
    if not path.exists():
        return Registry()
    registry = msgspec.json.decode(path.read_bytes(), type=Registry)
    for credential in registry.credentials:
        credential.check()
    return registry


def save_registry(path: Path, registry: Registry) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.format(msgspec.json.encode(registry), indent=2) + b"\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
