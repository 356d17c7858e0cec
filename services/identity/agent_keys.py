"""The keys agents sign their commands with (ADR 0066), as the intake looks them up.

Keys are trusted through the log, not a file (ADR 0068): a human principal or an operator
proposes a key, a different operator approves it, and either may revoke it, each step an event
on the ``agent-keys`` stream (``services.domain.agent_keys``). ``from_registry`` turns that
aggregate into the lookup the intake verifies signatures against: an approved key is live, a
revoked key is ``revoked``, and a key still awaiting approval is not there at all (its
signatures are ``signature_invalid``, as an unknown key's: nobody stands behind it yet).

``key_id`` is the first 16 hex digits of the SHA-256 of the raw public key (as for work-order
keys, ADR 0063).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from schemas.agent_key_messages import AgentKeyLimits
from services.domain.agent_keys import AgentKeyRegistry
from services.identity.registry import ID_PATTERN
from services.signing.port import PUBLIC_KEY_BYTES, b64url, from_b64url, key_id_for

# The limits a key carries: ``amount_msat_max`` per command (checked at intake), and a rolling
# ``window_s``/``window_msat_max`` per key (checked by the engine's single writer, beside the
# policy's spend windows).
AgentLimits = AgentKeyLimits


class InvalidAgentKey(ValueError):
    """An entry that breaks the rules (bad id, key or key id)."""


class AgentKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    agent_id: str
    key_id: str
    public_key: str  # base64url, unpadded, of the 32 raw bytes
    limits: AgentLimits = AgentLimits()
    revoked: bool = False
    created_at_ms: int = 0
    # The human responsible for the agent: its intents record it as ``on_behalf_of``.
    sponsor_id: str | None = None

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


def agent_key(
    agent_id: str,
    public_key: str,
    *,
    amount_msat_max: int | None = None,
    now_ms: int = 0,
    sponsor_id: str | None = None,
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
        sponsor_id=sponsor_id,
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


class AgentKeyLookup(Protocol):
    """What the intake asks: the key with ``key_id``, revoked or not."""

    def find(self, key_id: str) -> AgentKey | None: ...


class IndexedAgentKeys:
    """A fixed set of keys with a lookup that does not scan (the log's, or a test's)."""

    def __init__(self, keys: AgentKeys) -> None:
        self.keys = keys
        self._index = {k.key_id: k for k in keys.keys}

    def find(self, key_id: str) -> AgentKey | None:
        return self._index.get(key_id)


def from_registry(registry: AgentKeyRegistry | None) -> IndexedAgentKeys:
    """The keys the log trusts: approved ones live, revoked ones revoked, proposals absent."""
    keys = []
    for record in registry.keys.values() if registry else ():
        if record.status == "proposed":
            continue
        p = record.proposal
        keys.append(
            AgentKey(
                agent_id=p.agent_id, key_id=p.key_id, public_key=p.public_key,
                limits=p.limits, revoked=record.status == "revoked",
                created_at_ms=record.approved_at_ms or p.proposed_at_ms,
                sponsor_id=p.sponsor_id,
            )
        )  # fmt: skip
    return IndexedAgentKeys(AgentKeys(keys=tuple(keys)))
