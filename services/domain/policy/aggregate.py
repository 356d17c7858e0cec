"""The policy document aggregate: proposals, and activation under the two-person rule.

Pure ``decide``/``evolve`` like ``services.domain.intent``. Rules:

- a proposal's version must exceed every version proposed before and the version in force
  (``baseline_version`` is the version in force before the log has any activation, e.g. the
  shipped default document);
- the approver must not be the proposer;
- approving activates the document; proposals at or below that version are superseded.

Repeating a proposal or an approval that is already recorded is a no-op, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas import errors
from schemas.policy_document import PolicyDocument
from schemas.policy_messages import (
    ApprovePolicy,
    PolicyActivated,
    PolicyCommand,
    PolicyEvent,
    PolicyProposed,
    ProposePolicy,
)


class PolicyDocumentAggregate(msgspec.Struct, frozen=True, kw_only=True):
    version: int  # stream version of the last folded event
    active_version: int | None = None
    active: PolicyDocument | None = None
    active_approver_id: str | None = None
    highest_proposed_version: int = 0
    pending: dict[int, PolicyProposed] = msgspec.field(default_factory=dict)


def decide(
    state: PolicyDocumentAggregate | None,
    command: PolicyCommand,
    *,
    now_ms: int,
    baseline_version: int = 0,
) -> list[PolicyEvent]:
    """``now_ms`` is the time of the decision (a proposal records it); never read here."""
    match command:
        case ProposePolicy():
            return _propose(state, command, baseline_version, now_ms)
        case ApprovePolicy():
            return _approve(state, command)
    raise AssertionError(f"unhandled command {type(command).__name__}")


def _propose(
    state: PolicyDocumentAggregate | None,
    command: ProposePolicy,
    baseline_version: int,
    now_ms: int,
) -> list[PolicyEvent]:
    version = command.policy_version
    if command.document.version != version:
        raise errors.SchemaViolation(
            f"policy_version {version} differs from document.version {command.document.version}",
            field="policy_version",
        )
    pending = state.pending.get(version) if state else None
    if (
        pending is not None
        and pending.proposer_id == command.proposer_id
        and pending.document == command.document
    ):
        return []
    floor = max(baseline_version, _active_version(state), _highest_proposed(state))
    if version <= floor:
        raise errors.InvalidTransition(
            f"policy_version must be greater than {floor}, got {version}",
            field="policy_version",
            code="policy_version_not_increasing",
        )
    return [
        PolicyProposed(
            policy_version=version, document=command.document,
            proposer_id=command.proposer_id, note=command.note, proposed_at_ms=now_ms,
        )
    ]  # fmt: skip


def _approve(state: PolicyDocumentAggregate | None, command: ApprovePolicy) -> list[PolicyEvent]:
    version = command.policy_version
    proposal = state.pending.get(version) if state else None
    if proposal is None:
        if state is not None and version == state.active_version:
            if command.approver_id == state.active_approver_id:
                return []
            raise errors.InvalidTransition(
                f"policy version {version} is already active", field="policy_version"
            )
        if state is not None and version <= _active_version(state):
            raise errors.InvalidTransition(
                f"policy version {version} was superseded by {state.active_version}",
                field="policy_version",
                code="policy_version_superseded",
            )
        raise errors.NotFound(f"no proposed policy version {version}", field="policy_version")
    if command.approver_id == proposal.proposer_id:
        # Both ids are the subjects' authenticated identities (the intake refuses a payload
        # that names anyone else), so two ids mean two credentials (ADR 0061).
        raise errors.TwoPersonRule(
            "the two-person rule: the approver must not be the proposer", field="approver_id"
        )
    assert state is not None
    return [
        PolicyActivated(
            policy_version=version, proposer_id=proposal.proposer_id,
            approver_id=command.approver_id, previous_version=state.active_version,
            note=command.note,
        )
    ]  # fmt: skip


def _active_version(state: PolicyDocumentAggregate | None) -> int:
    return (state.active_version or 0) if state else 0


def _highest_proposed(state: PolicyDocumentAggregate | None) -> int:
    return state.highest_proposed_version if state else 0


def evolve(state: PolicyDocumentAggregate | None, event: PolicyEvent) -> PolicyDocumentAggregate:
    current = state or PolicyDocumentAggregate(version=0)
    match event:
        case PolicyProposed():
            assert event.policy_version > current.highest_proposed_version, "versions increase"
            assert event.policy_version > _active_version(current)
            return msgspec.structs.replace(
                current,
                version=current.version + 1,
                highest_proposed_version=event.policy_version,
                pending={**current.pending, event.policy_version: event},
            )
        case PolicyActivated():
            proposal = current.pending.get(event.policy_version)
            assert proposal is not None, f"activating unproposed version {event.policy_version}"
            assert event.approver_id != proposal.proposer_id, "two-person rule"
            assert event.policy_version > _active_version(current)
            return msgspec.structs.replace(
                current,
                version=current.version + 1,
                active_version=event.policy_version,
                active=proposal.document,
                active_approver_id=event.approver_id,
                pending={v: p for v, p in current.pending.items() if v > event.policy_version},
            )
    raise AssertionError(f"unhandled event {type(event).__name__}")


def fold(events: Iterable[PolicyEvent]) -> PolicyDocumentAggregate | None:
    state: PolicyDocumentAggregate | None = None
    for event in events:
        state = evolve(state, event)
    return state
