"""The policy document aggregate: versions increase, and the two-person rule."""

from __future__ import annotations

import msgspec
import pytest

from schemas import errors
from schemas.policy_messages import PolicyCommand, PolicyEvent
from services.domain.policy import (
    ApprovePolicy,
    PolicyActivated,
    PolicyDocument,
    PolicyProposed,
    ProposePolicy,
    decide_policy,
    evolve_policy,
    fold_policy,
)
from services.domain.policy.aggregate import PolicyDocumentAggregate
from services.policy.loader import load_default_policy

DEFAULT = load_default_policy()
NOW_MS = 1_700_000_000_000


def doc(version: int) -> PolicyDocument:
    return msgspec.structs.replace(DEFAULT, version=version)


def propose(version: int, proposer: str = "ann") -> ProposePolicy:
    return ProposePolicy(policy_version=version, document=doc(version), proposer_id=proposer)


def approve(version: int, approver: str = "bob") -> ApprovePolicy:
    return ApprovePolicy(policy_version=version, approver_id=approver)


def run(
    commands: list[PolicyCommand], baseline_version: int = 1
) -> tuple[PolicyDocumentAggregate | None, list[PolicyEvent]]:
    state: PolicyDocumentAggregate | None = None
    log: list[PolicyEvent] = []
    for second, command in enumerate(commands):
        now_ms = NOW_MS + second * 1000
        for event in decide_policy(
            state, command, now_ms=now_ms, baseline_version=baseline_version
        ):
            state = evolve_policy(state, event)
            log.append(event)
    return state, log


def test_a_second_person_activates_a_proposal() -> None:
    state, log = run([propose(2), approve(2)])
    assert state is not None
    assert (state.active_version, state.active, state.pending) == (2, doc(2), {})
    assert log[-1] == PolicyActivated(policy_version=2, proposer_id="ann", approver_id="bob",
                                      previous_version=None)  # fmt: skip
    assert fold_policy(log) == state


def test_the_proposer_cannot_approve() -> None:
    # The ids are the subjects' authenticated identities (the intake refuses a payload that
    # names anyone else, ADR 0061): the same id is the same credential.
    state, _ = run([propose(2, proposer="ann")])
    with pytest.raises(errors.TwoPersonRule) as refused:
        decide_policy(state, approve(2, approver="ann"), now_ms=NOW_MS)
    assert (refused.value.code, refused.value.field) == ("two_person_rule", "approver_id")
    assert isinstance(refused.value, errors.Forbidden)
    # Nor later, once another proposal is pending beside it.
    state, _ = run([propose(2, proposer="ann"), propose(3, proposer="bob")])
    with pytest.raises(errors.TwoPersonRule):
        decide_policy(state, approve(2, approver="ann"), now_ms=NOW_MS)
    assert decide_policy(state, approve(3, approver="ann"), now_ms=NOW_MS)


@pytest.mark.parametrize("version", [0, 1])
def test_a_proposal_must_exceed_the_baseline(version: int) -> None:
    with pytest.raises((errors.InvalidTransition, msgspec.ValidationError)):
        decide_policy(None, propose(version), baseline_version=1, now_ms=NOW_MS)


def test_versions_increase_monotonically() -> None:
    state, _ = run([propose(3)])
    with pytest.raises(errors.InvalidTransition) as refused:
        decide_policy(state, propose(2, proposer="cat"), baseline_version=1, now_ms=NOW_MS)
    assert refused.value.code == "policy_version_not_increasing"
    state, _ = run([propose(2), approve(2), propose(3), approve(3)])
    assert state is not None and state.active_version == 3
    with pytest.raises(errors.InvalidTransition):
        decide_policy(state, propose(3, proposer="cat"), now_ms=NOW_MS)


def test_activating_a_newer_version_supersedes_older_proposals() -> None:
    state, _ = run([propose(2), propose(3, proposer="cat"), approve(3)])
    assert state is not None and state.pending == {}
    with pytest.raises(errors.InvalidTransition) as refused:
        decide_policy(state, approve(2), now_ms=NOW_MS)
    assert refused.value.code == "policy_version_superseded"


def test_an_older_pending_proposal_can_still_be_activated_first() -> None:
    state, log = run([propose(2), propose(3, proposer="cat"), approve(2), approve(3, "ann")])
    assert state is not None and state.active_version == 3
    assert isinstance(log[-1], PolicyActivated) and log[-1].previous_version == 2


def test_the_version_must_match_the_document() -> None:
    command = ProposePolicy(policy_version=3, document=doc(2), proposer_id="ann")
    with pytest.raises(errors.SchemaViolation) as refused:
        decide_policy(None, command, now_ms=NOW_MS)
    assert refused.value.field == "policy_version"


def test_approving_an_unknown_version_is_not_found() -> None:
    with pytest.raises(errors.NotFound):
        decide_policy(None, approve(2), now_ms=NOW_MS)


def test_repeated_commands_are_no_ops() -> None:
    state, _ = run([propose(2)])
    assert decide_policy(state, propose(2), now_ms=NOW_MS) == []
    with pytest.raises(errors.InvalidTransition):
        other = ProposePolicy(policy_version=2, document=doc(2), proposer_id="cat")
        decide_policy(state, other, now_ms=NOW_MS)
    state, _ = run([propose(2), approve(2)])
    assert decide_policy(state, approve(2), now_ms=NOW_MS) == []
    with pytest.raises(errors.InvalidTransition):
        decide_policy(state, approve(2, approver="cat"), now_ms=NOW_MS)


def test_evolve_refuses_an_activation_that_breaks_the_two_person_rule() -> None:
    state, _ = run([propose(2)])
    with pytest.raises(AssertionError):
        evolve_policy(
            state, PolicyActivated(policy_version=2, proposer_id="ann", approver_id="ann")
        )


def test_messages_round_trip_as_json() -> None:
    for message in (propose(2), approve(2)):
        wire = msgspec.json.encode(message)
        assert msgspec.json.decode(wire, type=ProposePolicy | ApprovePolicy) == message
    proposed = PolicyProposed(policy_version=2, document=doc(2), proposer_id="ann")
    assert msgspec.json.decode(msgspec.json.encode(proposed), type=PolicyProposed) == proposed


def test_a_proposal_records_when_it_was_made_and_a_repeat_keeps_that_time() -> None:
    state, log = run([propose(2), propose(3, proposer="cat")])
    assert [(e.policy_version, e.proposed_at_ms) for e in log] == [  # type: ignore[union-attr]
        (2, NOW_MS), (3, NOW_MS + 1000),
    ]  # fmt: skip
    assert decide_policy(state, propose(2), now_ms=NOW_MS + 60_000) == []
    assert state is not None and state.pending[2].proposed_at_ms == NOW_MS


def test_a_proposal_logged_before_proposals_had_a_time_still_decodes() -> None:
    old = msgspec.to_builtins(PolicyProposed(policy_version=2, document=doc(2), proposer_id="a"))
    del old["proposed_at_ms"]
    assert msgspec.convert(old, PolicyProposed).proposed_at_ms is None
