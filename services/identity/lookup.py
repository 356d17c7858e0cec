"""The engine's view of the credential registry: a lookup by (role, id), current with the file.

Operators add and revoke credentials while the engine runs (``save_registry`` replaces the file
atomically), so the engine follows the file (``services.identity.followed_file``: how often it
looks, and why a broken file leaves the previous registry in force).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from services.identity.followed_file import CHECK_INTERVAL_S, FollowedFile
from services.identity.registry import (
    Credential,
    InvalidCredential,
    Registry,
    Role,
    load_registry,
)

log = structlog.get_logger("corridor.identity")


class CredentialLookup(Protocol):
    """What the engine asks of a registry: the live credential of ``role`` named ``ident``."""

    def find(self, role: Role, ident: str) -> Credential | None: ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class IndexedRegistry:
    """A fixed registry with a lookup that does not scan (tests, and the file's current one).
    A credential past its ``expires_at_ms`` is not found, as a revoked one is not."""

    def __init__(self, registry: Registry, *, now_ms: Callable[[], int] = _now_ms) -> None:
        self.registry = registry
        self._now_ms = now_ms
        self._index = {(c.role, c.id): c for c in registry.live()}
        # By the SHA-256 of the HTTP API key (ADR 0171). A dict lookup's timing says nothing
        # an attacker can use: they choose a token, not its hash.
        self._by_api_key = {c.api_key_sha256: c for c in registry.live() if c.api_key_sha256}

    def find(self, role: Role, ident: str) -> Credential | None:
        return self._unexpired(self._index.get((role, ident)))

    def by_api_key_hash(self, digest: str) -> Credential | None:
        return self._unexpired(self._by_api_key.get(digest))

    def _unexpired(self, credential: Credential | None) -> Credential | None:
        if credential is None or credential.expires_at_ms is None:
            return credential
        return None if credential.expired(self._now_ms()) else credential


class RegistryFile:
    """The registry at ``path``, read again when the file changes (``FollowedFile``).

    A missing file is an empty registry, which refuses everyone: a configured registry never
    falls back to trusting payloads.
    """

    def __init__(
        self,
        path: Path,
        *,
        check_interval_s: float = CHECK_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._file = FollowedFile(
            path,
            load=lambda p: IndexedRegistry(load_registry(p)),
            empty=IndexedRegistry(Registry()),
            refused=(msgspec.DecodeError, msgspec.ValidationError, InvalidCredential),
            what="credentials",
            count=lambda indexed: len(indexed.registry.live()),
            check_interval_s=check_interval_s,
            monotonic=monotonic,
        )

    @property
    def reloads(self) -> int:
        return self._file.reloads

    @property
    def registry(self) -> Registry:
        return self._file.current.registry

    def find(self, role: Role, ident: str) -> Credential | None:
        found = self._file.current.find(role, ident)
        return found if found is not None else self._file.after_miss().find(role, ident)

    def by_api_key_hash(self, digest: str) -> Credential | None:
        """The live credential whose API key hashes to ``digest``; a miss looks at the file
        again sooner (a key added a moment ago is found), as ``find`` does."""
        found = self._file.current.by_api_key_hash(digest)
        return found if found is not None else self._file.after_miss().by_api_key_hash(digest)


def lookup_from_settings(settings: object) -> CredentialLookup | None:
    """The registry named by the ``credentials_file`` setting, or ``None`` when there is none
    (unit tests and setups from before credentials: identities are then not verified)."""
    path = getattr(settings, "credentials_file", None)
    return RegistryFile(Path(path)) if path else None
