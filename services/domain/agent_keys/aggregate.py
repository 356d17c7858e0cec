"""The agent key aggregate: proposals, approval under the two-person rule, revocation.

Pure ``decide``/``evolve`` like ``services.domain.policy.aggregate``; time arrives as
``now_ms`` and the sender as ``actor``, the principal the intake authenticated (ADR 0061).
Rules (ADR 0068):

- a human principal (a caller credential of kind ``human``) or an operator proposes a key;
  a human is always the sponsor of what they propose, an operator may name a sponsor;
- only an operator approves, and never their own proposal nor a key they sponsor
  (``two_person_rule``): every trusted key has two distinct people behind it, and when the
  proposer is an operator, they are two distinct operators;
- an agent has at most one approved key: a first key is *registered*, a new one *rotates*
  (``replaces_key_id``) and its approval revokes the old key in the same commit;
- an operator revokes any key, a human only the keys they sponsor; a pending proposal can be
  revoked too, and then can never be approved;
- a key id is never reused, and repeating a recorded proposal, approval or revocation does
  nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from schemas import errors
from schemas.agent_key_messages import (
    PENDING_PER_AGENT_MAX,
    AgentKeyApproved,
    AgentKeyCommand,
    AgentKeyEvent,
    AgentKeyProposed,
    AgentKeyRevoked,
    AgentKeyView,
    ApproveAgentKey,
    KeyStatus,
    ProposeAgentKey,
    ProposerRole,
    RevokeAgentKey,
)
from services.domain.principal import Principal
from services.signing.port import PUBLIC_KEY_BYTES, from_b64url, key_id_for

AGENT_KEYS_STREAM: Final = "agent-keys"


class AgentKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    proposal: AgentKeyProposed
    status: KeyStatus = "proposed"
    approver_id: str | None = None
    approved_at_ms: int | None = None
    revoker_id: str | None = None
    revoked_at_ms: int | None = None

    @property
    def agent_id(self) -> str:
        return self.proposal.agent_id

    @property
    def sponsor_id(self) -> str:
        return self.proposal.sponsor_id

    def view(self) -> AgentKeyView:
        p = self.proposal
        return AgentKeyView(
            key_id=p.key_id, agent_id=p.agent_id, public_key=p.public_key, limits=p.limits,
            status=self.status, proposer_id=p.proposer_id, proposer_role=p.proposer_role,
            sponsor_id=p.sponsor_id, approver_id=self.approver_id, revoker_id=self.revoker_id,
            replaces_key_id=p.replaces_key_id, proposed_at_ms=p.proposed_at_ms,
            approved_at_ms=self.approved_at_ms, revoked_at_ms=self.revoked_at_ms,
        )  # fmt: skip


class AgentKeyRegistry(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 0  # stream version of the last folded event
    keys: dict[str, AgentKeyRecord] = msgspec.field(default_factory=dict)

    def of_agent(self, agent_id: str, status: KeyStatus | None = None) -> list[AgentKeyRecord]:
        return [
            r for r in self.keys.values() if r.agent_id == agent_id and status in (None, r.status)
        ]


def decide(
    state: AgentKeyRegistry | None,
    command: AgentKeyCommand,
    *,
    actor: Principal,
    now_ms: int,
) -> list[AgentKeyEvent]:
    """``actor``: who sent ``command``, as authenticated; its payload's id already agrees."""
    registry = state or AgentKeyRegistry()
    match command:
        case ProposeAgentKey():
            return _propose(registry, command, _proposer_role(actor), now_ms)
        case ApproveAgentKey():
            return _approve(registry, command, actor, now_ms)
        case RevokeAgentKey():
            return _revoke(registry, command, _proposer_role(actor), now_ms)
    raise AssertionError(f"unhandled command {type(command).__name__}")


def _proposer_role(actor: Principal) -> ProposerRole:
    # The intake lets only operators and human callers send these commands (ADR 0068); the
    # check is repeated here because the rule is the domain's.
    if actor.role == "operator":
        return "operator"
    if actor.role == "caller":
        return "human"
    raise errors.Forbidden(f"a {actor.role} cannot change agent keys", field="subject")


def _propose(
    registry: AgentKeyRegistry, command: ProposeAgentKey, role: ProposerRole, now_ms: int
) -> list[AgentKeyEvent]:
    try:
        raw = from_b64url(command.public_key)
    except ValueError:
        raw = b""
    if len(raw) != PUBLIC_KEY_BYTES:
        raise errors.SchemaViolation(
            f"public_key must be {PUBLIC_KEY_BYTES} raw bytes in unpadded base64url",
            field="public_key",
        )
    key_id = key_id_for(raw)
    replaced = _replaced(registry, command)
    if role == "human":
        if command.sponsor_id not in (None, command.proposer_id):
            raise errors.Forbidden("a human sponsors only the keys they propose",
                                   field="sponsor_id")  # fmt: skip
        if replaced is not None and replaced.sponsor_id != command.proposer_id:
            raise errors.Forbidden(
                f"key {replaced.proposal.key_id} has another sponsor", field="replaces_key_id"
            )
    sponsor = command.sponsor_id or (replaced.sponsor_id if replaced else command.proposer_id)
    proposed = AgentKeyProposed(
        key_id=key_id, agent_id=command.agent_id, public_key=command.public_key,
        limits=command.limits, proposer_id=command.proposer_id, proposer_role=role,
        sponsor_id=sponsor, replaces_key_id=command.replaces_key_id, note=command.note,
        proposed_at_ms=now_ms,
    )  # fmt: skip
    existing = registry.keys.get(key_id)
    if existing is not None:
        if msgspec.structs.replace(existing.proposal, proposed_at_ms=now_ms) == proposed:
            return []
        raise errors.InvalidTransition(
            f"key {key_id} was proposed before: a key id is never reused",
            field="public_key",
            code="agent_key_exists",
        )
    if replaced is None and registry.of_agent(command.agent_id, "approved"):
        raise errors.InvalidTransition(
            f"agent {command.agent_id} has a live key: rotate it (replaces_key_id)",
            field="agent_id",
            code="agent_has_live_key",
        )
    if len(registry.of_agent(command.agent_id, "proposed")) >= PENDING_PER_AGENT_MAX:
        raise errors.InvalidTransition(
            f"agent {command.agent_id} has {PENDING_PER_AGENT_MAX} proposals awaiting approval",
            field="agent_id",
            code="too_many_pending",
        )
    return [proposed]


def _replaced(registry: AgentKeyRegistry, command: ProposeAgentKey) -> AgentKeyRecord | None:
    if command.replaces_key_id is None:
        return None
    old = registry.keys.get(command.replaces_key_id)
    if old is None or old.agent_id != command.agent_id or old.status != "approved":
        raise errors.InvalidTransition(
            f"agent {command.agent_id} has no live key {command.replaces_key_id}",
            field="replaces_key_id",
        )
    return old


def _approve(
    registry: AgentKeyRegistry, command: ApproveAgentKey, actor: Principal, now_ms: int
) -> list[AgentKeyEvent]:
    if actor.role != "operator":
        raise errors.Forbidden("only an operator approves an agent key", field="subject")
    record = registry.keys.get(command.key_id)
    if record is None:
        raise errors.NotFound(f"no proposed agent key {command.key_id}", field="key_id")
    if record.status == "approved":
        if record.approver_id == command.approver_id:
            return []
        raise errors.InvalidTransition(f"key {command.key_id} is approved already",
                                       field="key_id")  # fmt: skip
    if record.status == "revoked":
        raise errors.KeyRevoked(f"key {command.key_id} was revoked", field="key_id")
    # Both ids are authenticated subject tokens (ADR 0061): two ids mean two credentials.
    if command.approver_id == record.proposal.proposer_id:
        raise errors.TwoPersonRule(
            "the two-person rule: the approver must not be the proposer", field="approver_id"
        )
    if command.approver_id == record.sponsor_id:
        raise errors.TwoPersonRule(
            "the two-person rule: the approver must not be the key's sponsor",
            field="approver_id",
        )
    replaces = record.proposal.replaces_key_id
    others = [r for r in registry.of_agent(record.agent_id, "approved") if r.proposal.key_id
              != replaces]  # fmt: skip
    if others:
        raise errors.InvalidTransition(
            f"agent {record.agent_id} has another live key {others[0].proposal.key_id}: "
            "propose a rotation of it",
            field="key_id",
            code="agent_has_live_key",
        )
    events: list[AgentKeyEvent] = []
    old = registry.keys.get(replaces) if replaces else None
    if old is not None and old.status == "approved":
        # First the old key goes, then the new one comes: an agent never has two live keys.
        events.append(
            AgentKeyRevoked(
                key_id=old.proposal.key_id, agent_id=record.agent_id,
                revoker_id=command.approver_id, reason="rotated", revoked_at_ms=now_ms,
            )
        )  # fmt: skip
    events.append(
        AgentKeyApproved(
            key_id=command.key_id, agent_id=record.agent_id, approver_id=command.approver_id,
            note=command.note, approved_at_ms=now_ms,
        )
    )  # fmt: skip
    return events


def _revoke(
    registry: AgentKeyRegistry, command: RevokeAgentKey, role: ProposerRole, now_ms: int
) -> list[AgentKeyEvent]:
    if command.key_id is not None:
        record = registry.keys.get(command.key_id)
        if record is None or record.agent_id != command.agent_id:
            raise errors.NotFound(
                f"agent {command.agent_id} has no key {command.key_id}", field="key_id"
            )
        targets = [record] if record.status != "revoked" else []
    else:
        every = registry.of_agent(command.agent_id)
        if not every:
            raise errors.NotFound(f"agent {command.agent_id} has no key", field="agent_id")
        targets = [r for r in every if r.status != "revoked"]
    if role == "human":
        for record in targets:
            if record.sponsor_id != command.revoker_id:
                raise errors.Forbidden(
                    f"key {record.proposal.key_id} has another sponsor: an operator revokes it",
                    field="key_id" if command.key_id else "agent_id",
                )
    return [
        AgentKeyRevoked(
            key_id=r.proposal.key_id, agent_id=r.agent_id, revoker_id=command.revoker_id,
            note=command.note, revoked_at_ms=now_ms,
        )
        for r in sorted(targets, key=lambda r: r.proposal.key_id)
    ]  # fmt: skip


def evolve(state: AgentKeyRegistry | None, event: AgentKeyEvent) -> AgentKeyRegistry:
    current = state or AgentKeyRegistry()
    match event:
        case AgentKeyProposed():
            assert event.key_id not in current.keys, f"key {event.key_id} proposed twice"
            keys = {**current.keys, event.key_id: AgentKeyRecord(proposal=event)}
        case AgentKeyApproved():
            record = current.keys.get(event.key_id)
            assert record is not None and record.status == "proposed", "approving a non-proposal"
            assert event.approver_id not in (record.proposal.proposer_id, record.sponsor_id), (
                "two-person rule"
            )
            approved = msgspec.structs.replace(
                record, status="approved", approver_id=event.approver_id,
                approved_at_ms=event.approved_at_ms,
            )  # fmt: skip
            keys = {**current.keys, event.key_id: approved}
        case AgentKeyRevoked():
            record = current.keys.get(event.key_id)
            assert record is not None and record.status != "revoked", "revoking twice"
            revoked = msgspec.structs.replace(
                record, status="revoked", revoker_id=event.revoker_id,
                revoked_at_ms=event.revoked_at_ms,
            )  # fmt: skip
            keys = {**current.keys, event.key_id: revoked}
        case _:
            raise AssertionError(f"unhandled event {type(event).__name__}")
    new = AgentKeyRegistry(version=current.version + 1, keys=keys)
    live = [r for r in new.keys.values() if r.status == "approved" and r.agent_id ==
            keys[event.key_id].agent_id]  # fmt: skip
    assert len(live) <= 1, "an agent has at most one approved key"
    return new


def fold(events: Iterable[AgentKeyEvent]) -> AgentKeyRegistry | None:
    state: AgentKeyRegistry | None = None
    for event in events:
        state = evolve(state, event)
    return state
