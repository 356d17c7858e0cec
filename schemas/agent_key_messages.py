"""Commands, events and replies of the agent key aggregate (ADR 0068).

An agent's signing key (ADR 0066) is trusted only once two people stood behind it: a human
principal or an operator proposes it, a different operator approves it. Revocation takes effect
at once. Every step is an event on the one stream ``agent-keys``.

Public keys are no secret: they travel in events and replies. Private keys never leave the
agent.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas.common import AmountMsat, CallerId, Message, Reason
from schemas.events import EventData
from schemas.policy_document import WINDOW_S_MAX

# A raw Ed25519 public key is 32 bytes: 43 characters of unpadded base64url.
PUBLIC_KEY_B64_CHARS: Final = 43
# The first 16 hex digits of SHA-256 of the raw public key (ADR 0063, 0066).
KEY_ID_PATTERN: Final = r"^[0-9a-f]{16}$"
# An agent has one live key and at most a rotation in flight; a handful of proposals per agent
# at once is plenty, and bounds what one proposer can make the engine hold.
PENDING_PER_AGENT_MAX: Final = 4
# ``list`` answers every key in one reply; a registry of a few thousand keys fits the server's
# default 1 MiB max_payload (about 300 bytes a key).
AGENT_KEYS_MAX: Final = 2_000

PublicKeyB64 = Annotated[
    str,
    msgspec.Meta(
        min_length=PUBLIC_KEY_B64_CHARS,
        max_length=PUBLIC_KEY_B64_CHARS,
        pattern=r"^[A-Za-z0-9_-]+$",
    ),
]
KeyId = Annotated[str, msgspec.Meta(pattern=KEY_ID_PATTERN)]
# Windows are bounded as the policy's are: the spend book keeps settlements for WINDOW_S_MAX.
WindowS = Annotated[int, msgspec.Meta(ge=1, le=WINDOW_S_MAX)]


class AgentKeyLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one key may spend, on top of the policy. Each limit is optional; the stricter of
    the key's limits and the policy's tiers wins (the policy judges all a key lets through).

    ``amount_msat_max``: the most one command may ask (``amount_msat``). ``window_s`` with
    ``window_msat_max``: the most the key's intents may hold or have settled (amount plus fee
    budget, as the policy's spend windows count) over the last ``window_s`` seconds."""

    amount_msat_max: AmountMsat | None = None
    window_s: WindowS | None = None
    window_msat_max: AmountMsat | None = None

    def __post_init__(self) -> None:
        if (self.window_s is None) != (self.window_msat_max is None):
            raise ValueError("limits.window_s and limits.window_msat_max go together")


class ProposeAgentKey(Message, frozen=True, kw_only=True):
    """A human principal or an operator proposes an agent's public key. Not trusted until a
    different operator approves it. ``replaces_key_id``: a rotation, the old key is revoked
    when this one is approved. ``sponsor_id``: the human responsible for the agent (recorded
    on its intents as ``on_behalf_of``); an operator may name one, a human is always their
    own, and by default it is the proposer."""

    agent_id: CallerId
    public_key: PublicKeyB64
    limits: AgentKeyLimits = AgentKeyLimits()
    proposer_id: CallerId
    sponsor_id: CallerId | None = None
    replaces_key_id: KeyId | None = None
    note: Reason = ""
    version: Literal[1] = 1


class ApproveAgentKey(Message, frozen=True, kw_only=True):
    """An operator who is neither the proposer nor the sponsor puts a proposed key in force."""

    key_id: KeyId
    approver_id: CallerId
    note: Reason = ""
    version: Literal[1] = 1


class RevokeAgentKey(Message, frozen=True, kw_only=True):
    """Revoke one key (``key_id``) or every key of ``agent_id``, pending proposals included.
    Operators revoke any key; a human only the keys they sponsor. Effective at once."""

    agent_id: CallerId
    key_id: KeyId | None = None
    revoker_id: CallerId
    note: Reason = ""
    version: Literal[1] = 1


class ListAgentKeys(Message, frozen=True, kw_only=True):
    """Query: every agent key the running engine knows, with its status."""

    version: Literal[1] = 1


ProposerRole = Literal["operator", "human"]


class AgentKeyProposed(EventData, frozen=True, kw_only=True):
    key_id: str
    agent_id: str
    public_key: str
    limits: AgentKeyLimits = AgentKeyLimits()
    proposer_id: str
    proposer_role: ProposerRole
    sponsor_id: str
    replaces_key_id: str | None = None
    note: str = ""
    proposed_at_ms: int


class AgentKeyApproved(EventData, frozen=True, kw_only=True):
    """From this event on, the key's signatures are accepted."""

    key_id: str
    agent_id: str
    approver_id: str
    note: str = ""
    approved_at_ms: int


class AgentKeyRevoked(EventData, frozen=True, kw_only=True):
    """From this event on, the key's signatures are refused (``key_revoked``). ``reason``:
    ``revoked`` by a person, ``rotated`` when its replacement was approved."""

    key_id: str
    agent_id: str
    revoker_id: str
    reason: Literal["revoked", "rotated"] = "revoked"
    note: str = ""
    revoked_at_ms: int


KeyStatus = Literal["proposed", "approved", "revoked"]


class AgentKeyView(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    agent_id: str
    public_key: str
    limits: AgentKeyLimits
    status: KeyStatus
    proposer_id: str
    proposer_role: ProposerRole
    sponsor_id: str
    approver_id: str | None = None
    revoker_id: str | None = None
    replaces_key_id: str | None = None
    proposed_at_ms: int
    approved_at_ms: int | None = None
    revoked_at_ms: int | None = None


class AgentKeyCommandAccepted(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """An agent key proposal, approval or revocation is durably committed."""

    ok: Literal[True] = True
    keys: tuple[AgentKeyView, ...] = ()  # the keys the command changed, as they are now
    duplicate: bool = False
    version: Literal[1] = 1


class AgentKeysView(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Reply to ``ListAgentKeys``."""

    ok: Literal[True] = True
    keys: tuple[AgentKeyView, ...] = ()
    version: Literal[1] = 1


AgentKeyCommand = ProposeAgentKey | ApproveAgentKey | RevokeAgentKey
AgentKeyEvent = AgentKeyProposed | AgentKeyApproved | AgentKeyRevoked

AGENT_KEY_COMMAND_TYPES: tuple[type[AgentKeyCommand], ...] = (
    ProposeAgentKey,
    ApproveAgentKey,
    RevokeAgentKey,
)
AGENT_KEY_QUERY_TYPES: tuple[type[ListAgentKeys], ...] = (ListAgentKeys,)
AGENT_KEY_EVENT_TYPES: dict[str, type[EventData]] = {
    cls.__name__: cls for cls in (AgentKeyProposed, AgentKeyApproved, AgentKeyRevoked)
}
