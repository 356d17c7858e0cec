"""The engine's view of the credential registry: a lookup by (role, id), current with the file.

Operators add and revoke credentials while the engine runs (``save_registry`` replaces the file
atomically), so the engine reads the file again when it changes. It looks at the file at most
once per ``check_interval_s``: a ``stat`` per command would cost the hot path more than the
lookup itself, and a revocation that takes a second to apply is well inside the time it takes
to reload nats-server's own configuration. A file that cannot be read or does not pass the
registry's checks leaves the previous registry in force (and is logged): a half-edited file
must not lock every caller out, nor let anyone in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from services.identity.registry import (
    Credential,
    InvalidCredential,
    Registry,
    Role,
    load_registry,
)

log = structlog.get_logger("corridor.identity")

# How often, at most, the file is looked at; a change takes effect within this time.
CHECK_INTERVAL_S = 1.0
# A credential added a moment ago (`corridor creds add` returns once nats-server admits it)
# must not be refused for the rest of CHECK_INTERVAL_S: a miss looks again, at most this often,
# so a flood of unknown ids costs at most a stat() per interval.
MISS_RECHECK_INTERVAL_S = 0.05


class CredentialLookup(Protocol):
    """What the engine asks of a registry: the live credential of ``role`` named ``ident``."""

    def find(self, role: Role, ident: str) -> Credential | None: ...


class IndexedRegistry:
    """A fixed registry with a lookup that does not scan (tests, and the file's current one)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._index = {(c.role, c.id): c for c in registry.live()}

    def find(self, role: Role, ident: str) -> Credential | None:
        return self._index.get((role, ident))


# What identifies one version of the file: os.replace gives a new inode even when the mtime
# does not move (coarse timestamps on some file systems), and a size change catches the rest.
_Signature = tuple[int, int, int]


class RegistryFile:
    """The registry at ``path``, read again when the file changes (mtime, inode or size).

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
        assert check_interval_s >= 0
        self.path = path
        self._check_interval_s = check_interval_s
        self._monotonic = monotonic
        self._signature: _Signature | None = None
        self._loaded = False
        self._current = IndexedRegistry(Registry())
        self._checked_at: float | None = None
        self.reloads = 0
        self._refresh()

    @property
    def registry(self) -> Registry:
        self._refresh()
        return self._current.registry

    def find(self, role: Role, ident: str) -> Credential | None:
        self._refresh()
        found = self._current.find(role, ident)
        if found is None:
            self._refresh(interval_s=min(self._check_interval_s, MISS_RECHECK_INTERVAL_S))
            found = self._current.find(role, ident)
        return found

    def _refresh(self, *, interval_s: float | None = None) -> None:
        now = self._monotonic()
        interval_s = self._check_interval_s if interval_s is None else interval_s
        if self._checked_at is not None and now - self._checked_at < interval_s:
            return
        self._checked_at = now
        signature = _signature(self.path)
        if self._loaded and signature == self._signature:
            return
        try:
            registry = load_registry(self.path)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError, InvalidCredential) as exc:
            # Not remembered as seen: the next check tries again (the writer may be mid-way).
            log.error("credentials_unreadable", path=str(self.path), error=type(exc).__name__,
                      detail=str(exc)[:200])  # fmt: skip
            return
        if signature is None:
            log.warning("credentials_file_missing", path=str(self.path))
        self._signature = signature
        self._loaded = True
        self._current = IndexedRegistry(registry)
        self.reloads += 1
        log.info("credentials_loaded", path=str(self.path), live=len(registry.live()))


def _signature(path: Path) -> _Signature | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def lookup_from_settings(settings: object) -> CredentialLookup | None:
    """The registry named by the ``credentials_file`` setting, or ``None`` when there is none
    (unit tests and setups from before credentials: identities are then not verified)."""
    path = getattr(settings, "credentials_file", None)
    return RegistryFile(Path(path)) if path else None
