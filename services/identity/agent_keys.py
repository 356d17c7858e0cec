"""The agent key registry: the Ed25519 keys agents sign their commands with (ADR 0066).

An agent's NATS credential says who is connected; its signing key says the command is the
agent's own, byte for byte. The registry lives beside the credential registry, in
``<state_dir>/auth/agent-keys.json``, and holds public keys only:

    {"keys": [{"agent_id": "bot-7", "key_id": "<16 hex>", "public_key": "<base64url>",
               "limits": {"amount_msat_max": 100000}, "revoked": false, "created_at_ms": 0}]}

``key_id`` is the first 16 hex digits of the SHA-256 of the raw public key (as for work-order
keys, ADR 0063); an entry whose id does not match its key is refused. Revoked keys stay in the
file, so a revoked key is told apart from one never seen, and a key id is never reused.

Limits: ``amount_msat_max`` is enforced at intake. ``window_s`` and ``window_msat_max`` are
part of the format but not enforced yet, so a file that sets them is refused rather than
trusted to do what it says.

This module reads and writes the file; ``AgentKeysFile`` is the engine's reloading view of it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

import msgspec
import structlog

from services.identity.followed_file import CHECK_INTERVAL_S, FollowedFile
from services.identity.registry import AUTH_DIR, ID_PATTERN
from services.signing.port import PUBLIC_KEY_BYTES, b64url, from_b64url, key_id_for

log = structlog.get_logger("corridor.identity")

AGENT_KEYS_FILE: Final = "agent-keys.json"
# Bounded like every input read by the engine: a registry of a few thousand keys at most.
AGENT_KEYS_BYTES_MAX: Final = 4 * 1024 * 1024


class InvalidAgentKey(ValueError):
    """An entry that breaks the registry's rules (bad id, key, key id or limits)."""


class AgentLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # The most one command may ask to pay, msat. Stricter than the policy's tiers or not,
    # the policy still judges every command this lets through.
    amount_msat_max: int | None = None
    # Reserved: a rolling budget per key. Not enforced yet; a file that sets them is refused.
    window_s: int | None = None
    window_msat_max: int | None = None

    def check(self) -> None:
        if self.amount_msat_max is not None and self.amount_msat_max < 0:
            raise InvalidAgentKey("limits.amount_msat_max must be 0 or more")
        if self.window_s is not None or self.window_msat_max is not None:
            raise InvalidAgentKey(
                "limits.window_s and limits.window_msat_max are not enforced yet: remove them "
                "(the policy's agent tier budgets spend over time)"
            )


class AgentKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    agent_id: str
    key_id: str
    public_key: str  # base64url, unpadded, of the 32 raw bytes
    limits: AgentLimits = AgentLimits()
    revoked: bool = False
    created_at_ms: int = 0

    @property
    def raw_public_key(self) -> bytes:
        return from_b64url(self.public_key)

    def check(self) -> None:
        if not ID_PATTERN.match(self.agent_id):
            raise InvalidAgentKey(f"agent_id {self.agent_id!r} must match {ID_PATTERN.pattern}")
        try:
            raw = from_b64url(self.public_key)
        except ValueError as exc:
            raise InvalidAgentKey(f"public_key: {exc}") from None
        if len(raw) != PUBLIC_KEY_BYTES:
            raise InvalidAgentKey(f"public_key must be {PUBLIC_KEY_BYTES} raw bytes")
        if self.key_id != key_id_for(raw):
            raise InvalidAgentKey(f"key_id {self.key_id!r} is not its public key's id")
        self.limits.check()


def agent_key(
    agent_id: str, public_key: str, *, amount_msat_max: int | None = None, now_ms: int = 0
) -> AgentKey:
    """A checked entry for ``public_key`` (base64url), its key id computed from it."""
    try:
        raw = from_b64url(public_key)
    except ValueError as exc:
        raise InvalidAgentKey(f"public key: {exc}") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise InvalidAgentKey(f"a public key is {PUBLIC_KEY_BYTES} raw bytes, got {len(raw)}")
    key = AgentKey(
        agent_id=agent_id,
        key_id=key_id_for(raw),
        public_key=b64url(raw),
        limits=AgentLimits(amount_msat_max=amount_msat_max),
        created_at_ms=now_ms,
    )
    key.check()
    return key


class AgentKeys(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    keys: tuple[AgentKey, ...] = ()

    def check(self) -> None:
        seen: set[str] = set()
        for key in self.keys:
            key.check()
            if key.key_id in seen:
                raise InvalidAgentKey(f"key {key.key_id} is listed twice")
            seen.add(key.key_id)

    def find(self, key_id: str) -> AgentKey | None:
        """The key with ``key_id``, revoked or not."""
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None

    def live(self, agent_id: str | None = None) -> tuple[AgentKey, ...]:
        return tuple(k for k in self.keys if not k.revoked and agent_id in (None, k.agent_id))

    def with_registered(self, key: AgentKey) -> AgentKeys:
        """``key`` added; the agent must have no live key (``with_rotated`` replaces one)."""
        key.check()
        if self.find(key.key_id) is not None:
            raise InvalidAgentKey(f"key {key.key_id} is registered already (keys are not reused)")
        if self.live(key.agent_id):
            raise InvalidAgentKey(f"agent {key.agent_id} has a live key: rotate it instead")
        return AgentKeys(keys=(*self.keys, key))

    def with_rotated(self, key: AgentKey) -> AgentKeys:
        """``key`` added and every other live key of its agent revoked, in one write."""
        if not self.live(key.agent_id):
            raise InvalidAgentKey(f"agent {key.agent_id} has no live key: register one")
        return self.with_revoked(key.agent_id).with_registered(key)

    def with_revoked(self, agent_id: str, key_id: str | None = None) -> AgentKeys:
        """Every live key of ``agent_id`` (or only ``key_id``) revoked."""
        targets = {k.key_id for k in self.live(agent_id) if key_id in (None, k.key_id)}
        if not targets:
            which = f"key {key_id}" if key_id else "key"
            raise InvalidAgentKey(f"agent {agent_id} has no live {which}")
        return AgentKeys(
            keys=tuple(
                msgspec.structs.replace(k, revoked=True) if k.key_id in targets else k
                for k in self.keys
            )
        )


def agent_keys_path(state_dir: Path) -> Path:
    return state_dir / AUTH_DIR / AGENT_KEYS_FILE


def load_agent_keys(path: Path) -> AgentKeys:
    """The registry at ``path``; a missing file is an empty one (every agent is refused)."""
    if not path.exists():
        return AgentKeys()
    with path.open("rb") as src:
        data = src.read(AGENT_KEYS_BYTES_MAX + 1)
    if len(data) > AGENT_KEYS_BYTES_MAX:
        raise InvalidAgentKey(f"{path} is larger than {AGENT_KEYS_BYTES_MAX} bytes")
    keys = msgspec.json.decode(data, type=AgentKeys)
    keys.check()
    return keys


def save_agent_keys(path: Path, keys: AgentKeys) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    keys.check()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.format(msgspec.json.encode(keys), indent=2) + b"\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".agent-keys-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AgentKeyLookup(Protocol):
    """What the intake asks: the key with ``key_id``, revoked or not."""

    def find(self, key_id: str) -> AgentKey | None: ...


class IndexedAgentKeys:
    """A fixed registry with a lookup that does not scan (tests, and the file's current one)."""

    def __init__(self, keys: AgentKeys) -> None:
        self.keys = keys
        self._index = {k.key_id: k for k in keys.keys}

    def find(self, key_id: str) -> AgentKey | None:
        return self._index.get(key_id)


class AgentKeysFile:
    """The registry at ``path``, read again when the file changes, as ``RegistryFile`` reads
    the credential registry (``FollowedFile``)."""

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
            load=lambda p: IndexedAgentKeys(load_agent_keys(p)),
            empty=IndexedAgentKeys(AgentKeys()),
            refused=(msgspec.DecodeError, msgspec.ValidationError, InvalidAgentKey),
            what="agent_keys",
            count=lambda indexed: len(indexed.keys.live()),
            check_interval_s=check_interval_s,
            monotonic=monotonic,
        )

    @property
    def reloads(self) -> int:
        return self._file.reloads

    def find(self, key_id: str) -> AgentKey | None:
        found = self._file.current.find(key_id)
        return found if found is not None else self._file.after_miss().find(key_id)
