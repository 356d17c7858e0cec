"""The rebalance aggregate (ADR 0244, 0245): idempotency, the tier, the day's fee budget per
source region, and property tests over random interleavings of several rebalances' requests
and their executors' reports (redeliveries, stale and forged reports) sharing one budget.

Invariants: a rebalance succeeds at most once and a success is never followed by a failure
(or the reverse); the budget stream's used fees (spent plus open reservations) never exceed
the day's budget; every reservation is released exactly once when its move ends; folding the
recorded events gives the states exactly; the same key and request is the same rebalance.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from schemas import errors
from schemas.commands import RecordPaymentOutcome
from schemas.common import Caller
from schemas.events import EventData
from schemas.rebalance_messages import (
    ApproveRebalance,
    RebalanceBudgetReleased,
    RebalanceBudgetReserved,
    RebalanceDispatched,
    RebalanceProposed,
    RebalanceRejected,
    RebalanceRequested,
    RebalanceSucceeded,
    RequestRebalance,
    budget_stream_id,
)
from services.domain.rebalance import (
    TRANSITIONS,
    DayBudget,
    Rebalance,
    RebalanceContext,
    RebalanceRules,
    RebalanceStatus,
    RebalanceTransitionError,
    decide,
    evolve,
    fold,
    fold_budget,
)

NOW_MS = 1_700_000_000_000
DAY = NOW_MS // 86_400_000
PLANNER = Caller(id="liquidity-planner", kind="service")
PUBKEY = "02" + "ab" * 32
PREIMAGE = hashlib.sha256(b"p").hexdigest()
BUDGET_MSAT = 50_000
RULES = RebalanceRules(
    auto_amount_msat_max=10_000_000, fee_budget_msat_per_day=BUDGET_MSAT, pay_timeout_s=60
)


def _request(key: str = "k", **fields: object) -> RequestRebalance:
    base: dict[str, object] = {
        "idempotency_key": key, "caller": PLANNER, "source_region": "eu",
        "source_node": "eu-lnd", "target_region": "us", "target_node": "us-lnd",
        "destination": PUBKEY, "amount_msat": 5_000_000, "max_fee_msat": 20_000,
        "explanation": {"reason": "local_ratio_low"},
    }  # fmt: skip
    return RequestRebalance(**(base | fields))  # type: ignore[arg-type]


# The engine's directory of our nodes (ADR 0249); one pubkey for both keeps the requests short.
NODES: dict[tuple[str, str], str | None] = {("eu", "eu-lnd"): PUBKEY, ("us", "us-lnd"): PUBKEY}
OUTSIDER = "03" + "ee" * 32


def _ctx(
    rid: str = "rbl-1",
    budget: DayBudget | None = None,
    fp: str = "fp",
    nodes: dict[tuple[str, str], str | None] = NODES,
) -> RebalanceContext:
    return RebalanceContext(now_ms=NOW_MS, rules=RULES, rebalance_id=rid,
                            request_fingerprint=fp, budget=budget, nodes=nodes)  # fmt: skip


def _outcome(outcome: str, rid: str = "rbl-1", **fields: object) -> RecordPaymentOutcome:
    base: dict[str, object] = {"intent_id": rid, "attempt": 1, "outcome": outcome,
                               "region": "eu", "node": "eu-lnd"}  # fmt: skip
    if outcome == "succeeded":
        base |= {"preimage": PREIMAGE, "fee_msat": 7_000}
    if outcome == "failed":
        base |= {"failure_reason": "no_route", "confirmed_not_paid": True}
    return RecordPaymentOutcome(**(base | fields))  # type: ignore[arg-type]


def _run(state: Rebalance | None, events: list[EventData]) -> Rebalance | None:
    for event in events:
        state = evolve(state, event)
    return state


def test_a_request_within_tier_and_budget_reserves_its_max_fee_and_dispatches_the_source() -> None:
    decided = decide(None, _request(), _ctx())
    assert [type(e) for e in decided.events] == [RebalanceRequested, RebalanceDispatched]
    requested, order = decided.events
    assert isinstance(requested, RebalanceRequested) and isinstance(order, RebalanceDispatched)
    assert requested.explanation == {"reason": "local_ratio_low"} and requested.tier == "auto"
    assert requested.budget_stream == budget_stream_id("eu", DAY)
    assert (order.region, order.node, order.destination) == ("eu", "eu-lnd", PUBKEY)
    (reserve,) = decided.budget
    assert isinstance(reserve, RebalanceBudgetReserved)
    assert (reserve.reserved_msat, reserve.used_before_msat, reserve.budget_msat) == (
        20_000,
        0,
        BUDGET_MSAT,
    )


def test_a_dry_run_records_the_proposal_only() -> None:
    decided = decide(None, _request(dry_run=True), _ctx())
    assert [type(e) for e in decided.events] == [RebalanceProposed] and decided.budget == []
    state = _run(None, decided.events)
    assert state is not None and state.status is RebalanceStatus.PROPOSED and state.is_final


def test_over_the_auto_limit_waits_for_approval_and_reserves_nothing() -> None:
    decided = decide(None, _request(amount_msat=10_000_001), _ctx())
    assert [type(e) for e in decided.events] == [RebalanceRequested] and decided.budget == []
    state = _run(None, decided.events)
    assert state is not None and state.status is RebalanceStatus.AWAITING_APPROVAL
    assert state.tier == "approval" and state.attempt == 0


def test_an_operator_s_approval_reserves_on_today_s_budget_and_dispatches_once() -> None:
    requested = decide(None, _request(amount_msat=10_000_001), _ctx()).events
    state = _run(None, requested)
    approval = ApproveRebalance(rebalance_id="rbl-1", operator_id="ops-1")
    decided = decide(state, approval, _ctx())
    assert [type(e).__name__ for e in decided.events] == [
        "RebalanceApproved",
        "RebalanceDispatched",
    ]
    (reserve,) = decided.budget
    assert isinstance(reserve, RebalanceBudgetReserved) and reserve.reserved_msat == 20_000
    state = _run(state, decided.events)
    assert state is not None and state.status is RebalanceStatus.DISPATCHED
    assert state.budget_stream == budget_stream_id("eu", DAY) and state.attempt == 1
    again = decide(state, approval, _ctx())
    assert again.events == [] and again.budget == []  # approved once
    spent = DayBudget(version=1, spent_msat=BUDGET_MSAT)
    late = decide(_run(None, requested), approval, _ctx(budget=spent))
    assert [type(e).__name__ for e in late.events] == ["RebalanceApproved", "RebalanceRejected"]
    with pytest.raises(errors.InvalidTransition):
        decide(_run(None, decide(None, _request(dry_run=True), _ctx()).events), approval, _ctx())


def test_a_move_over_the_budget_left_is_rejected_and_audited() -> None:
    budget = DayBudget(version=1, spent_msat=35_000)
    decided = decide(None, _request(), _ctx(budget=budget))
    assert [type(e) for e in decided.events] == [RebalanceRequested, RebalanceRejected]
    rejected = decided.events[1]
    assert isinstance(rejected, RebalanceRejected) and rejected.reason == "fee_budget_exhausted"
    assert decided.budget == []


def test_circles_need_one_node_and_their_hops_and_non_service_callers_are_refused() -> None:
    circular = decide(None, _request(mode="circular"), _ctx())
    assert isinstance(circular.events[1], RebalanceRejected)
    assert circular.events[1].reason == "bad_circle"
    hops = {"outgoing_channel_id": "800x1x0", "last_hop_pubkey": "03" + "cd" * 32}
    stray = decide(None, _request(**hops), _ctx())  # hops on a cross-region move
    assert isinstance(stray.events[1], RebalanceRejected) and stray.events[1].reason == "bad_circle"
    circle = decide(None, _request(mode="circular", target_region="eu", target_node="eu-lnd",
                                   **hops), _ctx())  # fmt: skip
    order = circle.events[1]
    assert isinstance(order, RebalanceDispatched) and order.node == "eu-lnd"
    assert (order.outgoing_channel_id, order.last_hop_pubkey) == tuple(hops.values())
    same = decide(None, _request(target_region="eu"), _ctx())
    assert isinstance(same.events[1], RebalanceRejected) and same.events[1].reason == "same_region"
    with pytest.raises(errors.Forbidden):
        decide(None, _request(caller=Caller(id="alice", kind="human")), _ctx())


def test_same_key_same_request_is_the_same_rebalance_and_a_different_one_is_refused() -> None:
    state = _run(None, decide(None, _request(), _ctx()).events)
    again = decide(state, _request(), _ctx())
    assert again.events == [] and again.budget == []
    with pytest.raises(errors.IdempotencyMismatch) as refused:
        decide(state, _request(amount_msat=6_000_000), _ctx(fp="fp2"))
    assert refused.value.field == "idempotency_key"


def test_reports_from_another_node_unproven_failures_and_forged_preimages_are_refused() -> None:
    decided = decide(None, _request(), _ctx())
    state, budget = _run(None, decided.events), fold_budget(decided.budget)
    with pytest.raises(errors.CorridorError) as wrong:
        decide(state, _outcome("succeeded", node="us-lnd", region="us"), _ctx(budget=budget))
    assert wrong.value.code == "wrong_node"
    with pytest.raises(errors.CorridorError) as unproven:
        decide(state, _outcome("failed", confirmed_not_paid=False), _ctx(budget=budget))
    assert unproven.value.code == "unproven_failure"
    with pytest.raises(errors.CorridorError) as forged:
        decide(state, _outcome("succeeded", payment_hash="00" * 32), _ctx(budget=budget))
    assert forged.value.code == "invalid_preimage"


def test_a_success_spends_its_fee_and_releases_the_rest_once() -> None:
    decided = decide(None, _request(), _ctx())
    state, budget = _run(None, decided.events), fold_budget(decided.budget)
    done = decide(state, _outcome("succeeded"), _ctx(budget=budget))
    assert [type(e) for e in done.events] == [RebalanceSucceeded]
    (release,) = done.budget
    assert isinstance(release, RebalanceBudgetReleased)
    assert (release.spent_msat, release.released_msat) == (7_000, 13_000)
    state, budget = _run(state, done.events), fold_budget([*decided.budget, *done.budget])
    assert budget is not None and budget.used_msat == 7_000 and budget.open_msat == {}
    redelivered = decide(state, _outcome("succeeded"), _ctx(budget=budget))
    assert redelivered.events == [] and redelivered.budget == []
    assert decide(state, _outcome("failed"), _ctx(budget=budget)).events == []


def test_every_transition_outside_the_table_is_refused() -> None:
    decided = decide(None, _request(), _ctx())
    budget = fold_budget(decided.budget)
    base = _run(None, decided.events[:1])
    assert base is not None
    dispatched = _run(base, decided.events[1:])
    samples: dict[str, EventData] = {
        type(e).__name__: e
        for e in [
            *decided.events,
            *decide(None, _request(dry_run=True), _ctx()).events,
            *decide(None, _request(mode="circular"), _ctx()).events[1:],
            *decide(dispatched, _outcome("in_flight"), _ctx(budget=budget)).events,
            *decide(dispatched, _outcome("succeeded"), _ctx(budget=budget)).events,
            *decide(dispatched, _outcome("failed"), _ctx(budget=budget)).events,
            *decide(
                _run(None, decide(None, _request(amount_msat=10_000_001), _ctx()).events),
                ApproveRebalance(rebalance_id="rbl-1", operator_id="ops-1"),
                _ctx(),
            ).events[:1],
        ]
    }
    assert set(samples) == {name for _, name in TRANSITIONS}
    for status in [None, *RebalanceStatus]:
        state = None if status is None else msgspec_replace(base, status)
        for name, event in samples.items():
            if (status, name) in TRANSITIONS:
                assert evolve(state, event).status is TRANSITIONS[(status, name)]
            else:
                with pytest.raises(RebalanceTransitionError):
                    evolve(state, event)


def msgspec_replace(state: Rebalance, status: RebalanceStatus) -> Rebalance:
    import msgspec

    return msgspec.structs.replace(state, status=status, tier="approval")


KEYS = st.sampled_from(["a", "b", "c", "d"])
OUTCOMES = st.sampled_from(["in_flight", "succeeded", "failed", "unproven", "other_node"])
FEES = st.integers(min_value=0, max_value=30_000)


class RebalanceMachine(RuleBasedStateMachine):
    """Several rebalances of one source region and day, sharing one budget stream."""

    @initialize()
    def start(self) -> None:
        self.states: dict[str, Rebalance | None] = {}
        self.events: dict[str, list[EventData]] = {}
        self.budget_events: list[EventData] = []
        self.budget: DayBudget | None = None
        self.ever: dict[str, set[str]] = {}

    def _apply(self, rid: str, command: RequestRebalance | RecordPaymentOutcome) -> None:
        ctx = _ctx(rid=rid, budget=self.budget, fp=f"fp-{rid}")
        try:
            decided = decide(self.states.get(rid), command, ctx)
        except errors.CorridorError:
            return
        for event in decided.events:
            self.states[rid] = evolve(self.states.get(rid), event)
            self.events.setdefault(rid, []).append(event)
            self.ever.setdefault(rid, set()).add(type(event).__name__)
        self.budget_events += decided.budget
        self.budget = fold_budget(self.budget_events)

    @rule(key=KEYS, max_fee=FEES)
    def planner_requests(self, key: str, max_fee: int) -> None:
        rid = f"rbl-{key}"
        known = self.states.get(rid)
        command = _request(key, max_fee_msat=known.max_fee_msat if known else max_fee)
        self._apply(rid, command)

    @rule(key=KEYS, outcome=OUTCOMES, fee=FEES)
    def executor_reports(self, key: str, outcome: str, fee: int) -> None:
        rid = f"rbl-{key}"
        match outcome:
            case "unproven":
                report = _outcome("failed", rid, confirmed_not_paid=False)
            case "other_node":
                report = _outcome("succeeded", rid, node="us-lnd", region="us")
            case "succeeded":
                state = self.states.get(rid)
                fee_msat = min(fee, state.max_fee_msat) if state else fee
                report = _outcome("succeeded", rid, fee_msat=fee_msat)
            case _:
                report = _outcome(outcome, rid)
        self._apply(rid, report)

    @invariant()
    def never_both_paid_and_failed(self) -> None:
        for rid, names in self.ever.items():
            assert not {"RebalanceSucceeded", "RebalanceFailed"} <= names, rid
            assert sum(type(e) is RebalanceSucceeded for e in self.events[rid]) <= 1

    @invariant()
    def the_budget_is_never_exceeded(self) -> None:
        assert self.budget is None or self.budget.used_msat <= BUDGET_MSAT

    @invariant()
    def reservations_follow_the_moves(self) -> None:
        reserved = {e.rebalance_id for e in self.budget_events
                    if isinstance(e, RebalanceBudgetReserved)}  # fmt: skip
        released = [e.rebalance_id for e in self.budget_events
                    if isinstance(e, RebalanceBudgetReleased)]  # fmt: skip
        assert len(released) == len(set(released)) and set(released) <= reserved
        for rid, state in self.states.items():
            assert state is not None
            ended = state.status in (RebalanceStatus.SUCCEEDED, RebalanceStatus.FAILED)
            assert (rid in released) == ended
            on_wire = state.status in (RebalanceStatus.DISPATCHED, RebalanceStatus.IN_FLIGHT)
            assert self.budget is None or (rid in self.budget.open_msat) == on_wire

    @invariant()
    def fold_reproduces_the_states(self) -> None:
        for rid, events in self.events.items():
            assert fold(events) == self.states[rid]


TestRebalanceMachine = RebalanceMachine.TestCase


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"destination": OUTSIDER}, "destination"),  # an outside node's pubkey
        ({"destination": OUTSIDER, "amount_msat": 50_000_000}, "destination"),  # approval tier
        ({"source_node": "us-lnd"}, "source_node"),  # a node of another region
        ({"target_node": "us-cln"}, "target_node"),  # no node of ours
        (
            {
                "mode": "circular",
                "target_region": "eu",
                "target_node": "eu-lnd",
                "destination": OUTSIDER,
                "outgoing_channel_id": "800x1x0",
                "last_hop_pubkey": OUTSIDER,
            },
            "destination",
        ),  # a circle ends at its source
    ],
)
def test_a_move_that_would_pay_outside_our_nodes_is_rejected_and_recorded_with_its_field(
    fields: dict[str, object], field: str
) -> None:
    decided = decide(None, _request(**fields), _ctx())
    assert [type(e) for e in decided.events] == [RebalanceRequested, RebalanceRejected]
    rejected = decided.events[1]
    assert isinstance(rejected, RebalanceRejected)
    assert (rejected.reason, rejected.field) == ("not_our_node", field)
    assert decided.budget == []  # nothing reserved, nothing dispatched


def test_a_target_whose_pubkey_the_engine_has_not_learned_is_retried_not_recorded() -> None:
    with pytest.raises(errors.Unavailable) as unknown:
        decide(None, _request(), _ctx(nodes={**NODES, ("us", "us-lnd"): None}))
    assert unknown.value.field == "destination"
    with pytest.raises(errors.Unavailable):  # an engine that knows no nodes pays nobody
        decide(
            None,
            _request(destination=OUTSIDER),
            _ctx(nodes={("us", "us-lnd"): None, ("eu", "eu-lnd"): None}),
        )


def test_an_approval_judges_the_destination_again_and_refuses_one_no_longer_ours() -> None:
    big = decide(None, _request(amount_msat=50_000_000), _ctx())
    state = _run(None, big.events)
    assert state is not None and state.status is RebalanceStatus.AWAITING_APPROVAL
    approve = ApproveRebalance(rebalance_id="rbl-1", operator_id="ops-1")
    moved = {**NODES, ("us", "us-lnd"): OUTSIDER}  # the target now reports another pubkey
    refused = decide(state, approve, _ctx(nodes=moved))
    assert [type(e) for e in refused.events] == [RebalanceRejected] and refused.budget == []
    rejected = refused.events[0]
    assert isinstance(rejected, RebalanceRejected) and rejected.field == "destination"
    assert _run(state, refused.events).status is RebalanceStatus.REJECTED  # type: ignore[union-attr]
