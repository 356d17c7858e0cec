"""The agent key aggregate (ADR 0068): two people behind every trusted key, revocation at once,
and the key's own limits, judged purely."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import errors
from schemas import events as ev
from schemas.agent_key_messages import (
    AgentKeyApproved,
    AgentKeyLimits,
    AgentKeyRevoked,
    ApproveAgentKey,
    ProposeAgentKey,
    RevokeAgentKey,
)
from schemas.common import Caller
from services.domain.agent_keys import AgentKeyRegistry, decide, evolve, fold
from services.domain.agent_keys.limits import check_key_limits
from services.domain.policy.spend_tracker import SpendTracker, by_agent_key
from services.domain.principal import Principal
from services.signing.port import b64url, key_id_for

OP1 = Principal(role="operator", id="op-1")
OP2 = Principal(role="operator", id="op-2")
ALICE = Principal(role="caller", id="alice")  # a human principal
BOB = Principal(role="caller", id="bob")


def _public(n: int) -> tuple[str, str]:
    raw = Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32).public_key().public_bytes_raw()
    return b64url(raw), key_id_for(raw)


def _run(state: AgentKeyRegistry | None, command: object, actor: Principal, now_ms: int = 1
         ) -> AgentKeyRegistry | None:  # fmt: skip
    for event in decide(state, command, actor=actor, now_ms=now_ms):  # type: ignore[arg-type]
        state = evolve(state, event)
    return state


def _proposed(actor: Principal = ALICE, n: int = 1, **kw: object) -> AgentKeyRegistry | None:
    public, _ = _public(n)
    command = ProposeAgentKey(agent_id="bot-7", public_key=public, proposer_id=actor.id, **kw)  # type: ignore[arg-type]
    return _run(None, command, actor)


def test_a_human_proposes_and_an_operator_approves() -> None:
    _, key_id = _public(1)
    state = _proposed()
    assert state is not None and state.keys[key_id].status == "proposed"
    assert state.keys[key_id].sponsor_id == "alice"
    state = _run(state, ApproveAgentKey(key_id=key_id, approver_id="op-1"), OP1)
    assert state is not None and state.keys[key_id].status == "approved"


def test_the_proposer_can_never_approve_their_own_proposal() -> None:
    _, key_id = _public(1)
    state = _proposed(OP1)
    with pytest.raises(errors.TwoPersonRule) as refused:
        decide(state, ApproveAgentKey(key_id=key_id, approver_id="op-1"), actor=OP1, now_ms=2)
    assert (refused.value.code, refused.value.field) == ("two_person_rule", "approver_id")
    # Two distinct authenticated operators: the proposer and another one.
    assert _run(state, ApproveAgentKey(key_id=key_id, approver_id="op-2"), OP2) is not None


def test_the_sponsor_cannot_approve_and_a_human_sponsors_only_themselves() -> None:
    _, key_id = _public(1)
    state = _proposed(OP1, sponsor_id="op-2")
    with pytest.raises(errors.TwoPersonRule):
        decide(state, ApproveAgentKey(key_id=key_id, approver_id="op-2"), actor=OP2, now_ms=2)
    public, _ = _public(2)
    with pytest.raises(errors.Forbidden) as refused:
        decide(None, ProposeAgentKey(agent_id="bot-7", public_key=public, proposer_id="alice",
                                     sponsor_id="bob"), actor=ALICE, now_ms=1)  # fmt: skip
    assert refused.value.field == "sponsor_id"


def test_only_operators_approve() -> None:
    _, key_id = _public(1)
    state = _proposed(OP1)
    with pytest.raises(errors.Forbidden):
        decide(state, ApproveAgentKey(key_id=key_id, approver_id="bob"), actor=BOB, now_ms=2)
    with pytest.raises(errors.Forbidden):
        decide(state, ApproveAgentKey(key_id=key_id, approver_id="x"),
               actor=Principal(role="agent", id="x"), now_ms=2)  # fmt: skip


def test_rotation_revokes_the_old_key_when_the_new_one_is_approved() -> None:
    _, first = _public(1)
    state = _run(_proposed(), ApproveAgentKey(key_id=first, approver_id="op-1"), OP1)
    public, second = _public(2)
    with pytest.raises(errors.InvalidTransition) as refused:
        decide(state, ProposeAgentKey(agent_id="bot-7", public_key=public, proposer_id="alice"),
               actor=ALICE, now_ms=2)  # fmt: skip
    assert refused.value.code == "agent_has_live_key"
    rotate = ProposeAgentKey(agent_id="bot-7", public_key=public, proposer_id="alice",
                             replaces_key_id=first)  # fmt: skip
    state = _run(state, rotate, ALICE, 3)
    assert state is not None and state.keys[first].status == "approved"  # until approved
    events = decide(state, ApproveAgentKey(key_id=second, approver_id="op-2"), actor=OP2, now_ms=4)
    assert [type(e) for e in events] == [AgentKeyRevoked, AgentKeyApproved]
    state = fold([*_events_of(state), *events])
    assert state is not None
    assert (state.keys[first].status, state.keys[second].status) == ("revoked", "approved")
    assert state.keys[second].sponsor_id == "alice"


def _events_of(state: AgentKeyRegistry) -> list[object]:
    # Rebuild the history of a small state (every test here proposes before it approves).
    out: list[object] = []
    for record in sorted(state.keys.values(), key=lambda r: r.proposal.proposed_at_ms):
        out.append(record.proposal)
        if record.approver_id:
            out.append(AgentKeyApproved(key_id=record.proposal.key_id, agent_id=record.agent_id,
                                        approver_id=record.approver_id,
                                        approved_at_ms=record.approved_at_ms or 0))  # fmt: skip
    return out


def test_revocation_by_operator_or_sponsor_only_and_idempotent() -> None:
    _, key_id = _public(1)
    state = _run(_proposed(), ApproveAgentKey(key_id=key_id, approver_id="op-1"), OP1)
    with pytest.raises(errors.Forbidden):
        decide(state, RevokeAgentKey(agent_id="bot-7", revoker_id="bob"), actor=BOB, now_ms=2)
    revoked = _run(state, RevokeAgentKey(agent_id="bot-7", revoker_id="alice"), ALICE, 2)
    assert revoked is not None and revoked.keys[key_id].status == "revoked"
    assert decide(revoked, RevokeAgentKey(agent_id="bot-7", revoker_id="op-2"), actor=OP2,
                  now_ms=3) == []  # fmt: skip
    # A revoked key is never approved again, and its id never reused.
    with pytest.raises(errors.KeyRevoked):
        decide(revoked, ApproveAgentKey(key_id=key_id, approver_id="op-2"), actor=OP2, now_ms=3)
    public, _ = _public(1)
    again = ProposeAgentKey(agent_id="bot-7", public_key=public, proposer_id="alice", note="x")
    with pytest.raises(errors.InvalidTransition) as refused:
        decide(revoked, again, actor=ALICE, now_ms=4)
    assert refused.value.code == "agent_key_exists"


def test_a_pending_proposal_can_be_withdrawn_and_never_approved() -> None:
    _, key_id = _public(1)
    state = _run(_proposed(), RevokeAgentKey(agent_id="bot-7", key_id=key_id, revoker_id="op-1"),
                 OP1)  # fmt: skip
    with pytest.raises(errors.KeyRevoked):
        decide(state, ApproveAgentKey(key_id=key_id, approver_id="op-2"), actor=OP2, now_ms=2)


def test_repeats_are_no_ops() -> None:
    public, key_id = _public(1)
    state = _proposed()
    propose = ProposeAgentKey(agent_id="bot-7", public_key=public, proposer_id="alice")
    assert decide(state, propose, actor=ALICE, now_ms=99) == []
    state = _run(state, ApproveAgentKey(key_id=key_id, approver_id="op-1"), OP1)
    assert decide(state, ApproveAgentKey(key_id=key_id, approver_id="op-1"), actor=OP1,
                  now_ms=3) == []  # fmt: skip


def test_limits_come_in_pairs_and_bad_keys_are_refused() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"window_s": 60}, AgentKeyLimits)
    with pytest.raises(errors.SchemaViolation):
        decide(None, ProposeAgentKey(agent_id="bot-7", public_key="A" * 40, proposer_id="alice"),
               actor=ALICE, now_ms=1)  # fmt: skip


# --- a key's own limits -----------------------------------------------------------------------
def _received(intent: str, key_id: str | None, amount_msat: int) -> ev.IntentReceived:
    return ev.IntentReceived(
        intent_id=intent, caller=Caller(id="bot-7", kind="agent"), idempotency_key=intent,
        corridor="us-eu", amount_msat=amount_msat, max_fee_msat=0, received_at_ms=0,
        request_fingerprint="f", agent_key_id=key_id,
    )  # fmt: skip


def test_key_limits_per_command_and_per_window() -> None:
    limits = AgentKeyLimits(amount_msat_max=5_000, window_s=60, window_msat_max=8_000)
    spend = SpendTracker(account=by_agent_key)
    check = dict(spend=spend, now_ms=1_000)
    with pytest.raises(errors.AgentLimitExceeded) as over:
        check_key_limits("k1", limits, amount_msat=5_001, budget_msat=5_001, **check)  # type: ignore[arg-type]
    assert (over.value.field, over.value.limit) == ("amount_msat", 5_000)
    # Reserved at the policy check, released on failure; another key's spend does not count.
    checked = ev.IntentPolicyChecked(tier="auto", policy_version=1)
    for intent, key in (("i1", "k1"), ("i2", "k2"), ("i3", None)):
        spend.apply(intent, [_received(intent, key, 5_000), checked], at_ms=1_000)
    check_key_limits("k1", limits, amount_msat=3_000, budget_msat=3_000, **check)  # type: ignore[arg-type]
    with pytest.raises(errors.AgentLimitExceeded) as over:
        check_key_limits("k1", limits, amount_msat=3_000, budget_msat=3_001, **check)  # type: ignore[arg-type]
    assert over.value.limit == 8_000
    spend.apply("i1", [ev.IntentFailed(reason="no_route", attempts=1)], at_ms=2_000)
    check_key_limits("k1", limits, amount_msat=5_000, budget_msat=8_000, **check)  # type: ignore[arg-type]


# --- Hypothesis: whatever is sent by whom, the invariants hold --------------------------------
ACTORS = [OP1, OP2, ALICE, BOB]
_commands = st.one_of(
    st.builds(lambda n, a, r: ("propose", n, a, r), st.integers(1, 4), st.sampled_from(ACTORS),
              st.booleans()),
    st.builds(lambda n, a: ("approve", n, a), st.integers(1, 4), st.sampled_from(ACTORS)),
    st.builds(lambda n, a: ("revoke", n, a), st.integers(0, 4), st.sampled_from(ACTORS)),
)  # fmt: skip


def _command(step: tuple[object, ...], state: AgentKeyRegistry | None) -> object:
    verb, n, actor = step[0], int(step[1]), step[2]
    assert isinstance(actor, Principal)
    if verb == "propose":
        public, _ = _public(n)
        live = [r.proposal.key_id for r in (state.of_agent("bot-7", "approved") if state else [])]
        replaces = live[0] if step[3] and live else None
        return ProposeAgentKey(agent_id="bot-7", public_key=public, proposer_id=actor.id,
                               replaces_key_id=replaces)  # fmt: skip
    if verb == "approve":
        return ApproveAgentKey(key_id=_public(n)[1], approver_id=actor.id)
    return RevokeAgentKey(agent_id="bot-7", key_id=_public(n)[1] if n else None,
                          revoker_id=actor.id)  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(_commands, max_size=25))
def test_every_trusted_key_has_two_people_behind_it(steps: list[tuple[object, ...]]) -> None:
    state: AgentKeyRegistry | None = None
    log: list[object] = []
    for now_ms, step in enumerate(steps):
        actor = step[2]
        assert isinstance(actor, Principal)
        try:
            events = decide(state, _command(step, state), actor=actor, now_ms=now_ms)  # type: ignore[arg-type]
        except errors.CorridorError:
            continue
        for event in events:
            state = evolve(state, event)
        log += events
        assert state is not None
        approved = state.of_agent("bot-7", "approved")
        assert len(approved) <= 1
        for record in state.keys.values():
            if record.approver_id is not None:
                people = {record.proposal.proposer_id, record.sponsor_id}
                assert record.approver_id not in people
                assert record.approver_id in ("op-1", "op-2")
            if record.proposal.proposer_role == "human":
                assert record.sponsor_id == record.proposal.proposer_id
    assert fold(log) == state  # type: ignore[arg-type]


def test_intents_get_shows_whom_an_agent_acted_for() -> None:
    from services.cli.intents import _agent_facts

    events = [{"type": "IntentReceived", "data": {"on_behalf_of": "alice", "agent_key_id": "k"}},
              {"type": "IntentDispatched", "data": {}}]  # fmt: skip
    assert _agent_facts(events) == {"on_behalf_of": "alice", "agent_key_id": "k"}
    assert _agent_facts([{"type": "IntentReceived", "data": {"on_behalf_of": None}}]) == {}
