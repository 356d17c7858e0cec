"""Channel fees in the region's day budget (ADR 0285), pure: an open or a close reserves its
judged on-chain fee on the same ``rblb-`` budget as rebalances, is refused with
``fee_budget_exhausted`` on ``max_onchain_fee_msat`` past it, an open of tier approval reserves
at approval, and a completed operation spends its fee exactly once.

The state machine mixes rebalances (their own aggregate) and channel operations on one budget:
used fees never exceed the day's budget, and each reservation is released at most once and
only when its operation ended."""

from __future__ import annotations

import dataclasses

import msgspec
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from schemas import channel_messages as cm
from schemas import errors
from schemas.commands import ApprovePaymentIntent, RecordPaymentOutcome
from schemas.common import Caller
from schemas.events import EventData
from schemas.rebalance_messages import (
    RebalanceBudgetReleased,
    RebalanceBudgetReserved,
    RequestRebalance,
    budget_stream_id,
)
from services.domain import rebalance
from services.domain.channel_ops import ChannelOp, ChannelOpContext, Refusal, decide, evolve
from services.domain.channel_ops.budget import FeeBudget, budget_events
from services.domain.rebalance import DayBudget, fold_budget
from tests.unit.test_channel_ops_machine import CALLER, POLICY, TXID, open_command
from tests.unit.test_rebalance_machine import (
    DAY,
    NODES,
    NOW_MS,
    RULES,
    _outcome,
    _request,
)

STREAM = budget_stream_id("eu", DAY)
# FUNDING_TX_VSIZE x rate x 1000: rate 10 is 1_540_000 msat; the budget is scaled to hold it.
OPEN_FEE_MSAT = cm.FUNDING_TX_VSIZE * 1000


def _budget(state: DayBudget | None, budget_msat: int) -> FeeBudget:
    return FeeBudget(stream_id=STREAM, region="eu", day=DAY, budget_msat=budget_msat,
                     state=state)  # fmt: skip


def _cctx(op_id: str, budget: FeeBudget | None, caller: Caller = CALLER) -> ChannelOpContext:
    return ChannelOpContext(op_id=op_id, request_fingerprint=f"fp-{op_id}", caller=caller,
                            policy=POLICY, fee_budget=budget)  # fmt: skip


def _step(
    op: ChannelOp | None, command: object, budget: FeeBudget, op_id: str = "chop-1"
) -> tuple[ChannelOp | None, list[EventData], list[EventData]] | Refusal:
    decision = decide(op, command, _cctx(op_id, budget))  # type: ignore[arg-type]
    if isinstance(decision, Refusal):
        return decision
    side = budget_events(op, decision, budget)
    for event in decision:
        op = evolve(op, event)
    return op, decision, side


def test_an_open_reserves_its_judged_fee_and_completion_spends_it_once() -> None:
    command = open_command(region="eu", sat_per_vbyte=1, max_onchain_fee_msat=OPEN_FEE_MSAT)
    step = _step(None, command, _budget(None, budget_msat=OPEN_FEE_MSAT))
    assert not isinstance(step, Refusal)
    op, _, side = step
    assert op is not None and op.budget_stream == STREAM
    assert side == [RebalanceBudgetReserved(
        rebalance_id="chop-1", source_region="eu", day=DAY, reserved_msat=OPEN_FEE_MSAT,
        used_before_msat=0, budget_msat=OPEN_FEE_MSAT,
    )]  # fmt: skip
    day = fold_budget(side)
    point = f"{TXID}:0"
    broadcast = cm.RecordChannelOpReport(op_id="chop-1", stage="broadcast", txid=TXID,
                                         channel_point=point)  # fmt: skip
    step = _step(op, broadcast, _budget(day, OPEN_FEE_MSAT))
    assert not isinstance(step, Refusal) and step[2] == []
    op = step[0]
    final = cm.RecordChannelOpReport(op_id="chop-1", stage="final", channel_id="1x1x1")
    step = _step(op, final, _budget(day, OPEN_FEE_MSAT))
    assert not isinstance(step, Refusal)
    op, _, settled = step
    assert settled == [RebalanceBudgetReleased(rebalance_id="chop-1", source_region="eu",
                                               day=DAY, spent_msat=OPEN_FEE_MSAT,
                                               released_msat=0)]  # fmt: skip
    day = fold_budget([*side, *settled])
    assert day is not None and day.spent_msat == OPEN_FEE_MSAT and not day.open_msat
    # The final report again (redelivery): nothing more, on either stream.
    again = _step(op, final, _budget(day, OPEN_FEE_MSAT))
    assert not isinstance(again, Refusal) and again[1] == [] and again[2] == []


def test_an_open_past_the_day_s_budget_is_refused_on_its_fee_field_and_records_nothing() -> None:
    command = open_command(region="eu", sat_per_vbyte=1, max_onchain_fee_msat=OPEN_FEE_MSAT)
    held = DayBudget(version=1, open_msat={"chop-x": 1})
    step = _step(None, command, _budget(held, budget_msat=OPEN_FEE_MSAT))
    assert step == Refusal("fee_budget_exhausted", "max_onchain_fee_msat")
    # The rebalances' share of the same stream is judged by their own limit (ADR 0285).
    moves = DayBudget(version=1, open_msat={"rbl-x": 10 * OPEN_FEE_MSAT})
    assert not isinstance(_step(None, command, _budget(moves, OPEN_FEE_MSAT)), Refusal)


def test_an_open_of_tier_approval_reserves_at_approval_and_is_refused_there_past_it() -> None:
    big = open_command(region="eu", local_amount_msat=POLICY.auto_open_msat_max + 1000,
                       sat_per_vbyte=1, max_onchain_fee_msat=OPEN_FEE_MSAT)  # fmt: skip
    step = _step(None, big, _budget(None, budget_msat=OPEN_FEE_MSAT))
    assert not isinstance(step, Refusal)
    op, _, side = step
    assert op is not None and op.tier == "approval" and op.budget_stream is None and side == []
    approve = ApprovePaymentIntent(intent_id="chop-1", operator_id="ops-2")
    other = Caller(id="ops-2", kind="human")
    full = _budget(
        DayBudget(version=1, spent_msat=1, channel_spent_msat=1), budget_msat=OPEN_FEE_MSAT
    )
    refused = decide(op, approve, _cctx("chop-1", full, caller=other))
    assert refused == Refusal("fee_budget_exhausted", "max_onchain_fee_msat")
    room = _budget(None, budget_msat=OPEN_FEE_MSAT)
    approved = decide(op, approve, _cctx("chop-1", room, caller=other))
    assert isinstance(approved, list) and isinstance(approved[0], cm.ChannelOpenApproved)
    assert approved[0].budget_stream == STREAM
    reserved = budget_events(op, approved, room)
    assert [type(e) for e in reserved] == [RebalanceBudgetReserved]
    assert evolve(op, approved[0]).budget_stream == STREAM


# Room for a few opens and closes at low rates, and for many rebalances: both kinds compete.
MIXED_BUDGET_MSAT = 3 * OPEN_FEE_MSAT
MIXED_RULES = dataclasses.replace(RULES, fee_budget_msat_per_day=MIXED_BUDGET_MSAT)
OPS = st.sampled_from(["a", "b", "c"])
RATES = st.integers(min_value=1, max_value=3)


class MixedBudgetMachine(RuleBasedStateMachine):
    """Rebalances and channel operations of one region and day on one budget stream."""

    @initialize()
    def start(self) -> None:
        self.budget_events: list[EventData] = []
        self.rebalances: dict[str, rebalance.Rebalance | None] = {}
        self.ops: dict[str, ChannelOp | None] = {}
        self.completed: set[str] = set()
        self.asked: dict[str, object] = {}

    @property
    def day(self) -> DayBudget | None:
        return fold_budget(self.budget_events)

    @rule(key=OPS, max_fee=st.integers(min_value=0, max_value=OPEN_FEE_MSAT))
    def planner_requests(self, key: str, max_fee: int) -> None:
        rid = f"rbl-{key}"
        known = self.rebalances.get(rid)
        command: RequestRebalance = _request(
            key, max_fee_msat=known.max_fee_msat if known else max_fee
        )
        self._rebalance(rid, command)

    @rule(key=OPS, outcome=st.sampled_from(["succeeded", "failed"]))
    def executor_reports_a_move(self, key: str, outcome: str) -> None:
        self._rebalance(f"rbl-{key}", _outcome(outcome, f"rbl-{key}"))

    def _rebalance(self, rid: str, command: RequestRebalance | RecordPaymentOutcome) -> None:
        try:
            decided = rebalance.decide(
                self.rebalances.get(rid), command,
                rebalance.RebalanceContext(now_ms=NOW_MS, rules=MIXED_RULES, rebalance_id=rid,
                                           request_fingerprint=f"fp-{rid}", budget=self.day,
                                           nodes=NODES),
            )  # fmt: skip
        except errors.CorridorError:
            return
        for event in decided.events:
            self.rebalances[rid] = rebalance.evolve(self.rebalances.get(rid), event)
        self.budget_events += decided.budget

    @rule(key=OPS, rate=RATES, close=st.booleans())
    def operator_asks(self, key: str, rate: int, close: bool) -> None:
        op_id = f"chop-{key}"
        command: object = (
            cm.CloseChannel(idempotency_key=key, region="eu", node="eu-lnd",
                            channel_point=f"{TXID}:1", sat_per_vbyte=rate,
                            max_onchain_fee_msat=POLICY.onchain_fee_msat_max)
            if close else
            open_command(idempotency_key=key, region="eu", sat_per_vbyte=rate,
                         max_onchain_fee_msat=POLICY.onchain_fee_msat_max)
        )  # fmt: skip
        # The same key again is the same request (idempotent: answered, nothing appended).
        self._op(op_id, self.asked.setdefault(op_id, command))

    @rule(key=OPS)
    def executor_completes(self, key: str) -> None:
        op_id = f"chop-{key}"
        op = self.ops.get(op_id)
        if op is None:
            return
        if op.txid is None:
            point = f"{TXID}:0" if op.kind == "open" else None
            self._op(op_id, cm.RecordChannelOpReport(op_id=op_id, stage="broadcast", txid=TXID,
                                                     channel_point=point))  # fmt: skip
        self._op(op_id, cm.RecordChannelOpReport(op_id=op_id, stage="final", channel_id="1x1x1"))

    def _op(self, op_id: str, command: object) -> None:
        before = self.ops.get(op_id)
        # The engine's budget for a report is the one the operation reserved on: one here.
        budget = _budget(self.day, budget_msat=MIXED_BUDGET_MSAT)
        decision = decide(before, command, _cctx(op_id, budget))  # type: ignore[arg-type]
        if isinstance(decision, Refusal):
            return
        side = budget_events(before, decision, budget)
        op = before
        for event in decision:
            op = evolve(op, event)
        self.ops[op_id] = op
        self.budget_events += side
        if op is not None and op.status == "completed":
            self.completed.add(op_id)

    @invariant()
    def the_budget_is_never_exceeded(self) -> None:
        day = self.day
        # Each kind within its own limit on the shared stream (ADR 0285).
        assert day is None or day.channel_used_msat <= MIXED_BUDGET_MSAT
        assert day is None or day.rebalance_used_msat <= MIXED_RULES.fee_budget_msat_per_day

    @invariant()
    def each_channel_reservation_is_released_once_and_only_when_completed(self) -> None:
        for op_id in self.ops:
            mine = [e for e in self.budget_events if getattr(e, "rebalance_id", None) == op_id]
            reserved = [e for e in mine if isinstance(e, RebalanceBudgetReserved)]
            released = [e for e in mine if isinstance(e, RebalanceBudgetReleased)]
            assert len(reserved) <= 1 and len(released) <= len(reserved)
            assert len(released) == (1 if reserved and op_id in self.completed else 0)


TestMixedBudget = MixedBudgetMachine.TestCase


def test_the_plan_s_spend_of_today_is_the_rebalances_share_of_the_stream() -> None:
    """``corridor liquidity plan`` reads the day's stream as the engine judges a move: a held
    channel fee is the channel operations' share, not the rebalances' (ADR 0285)."""
    from services.liquidity.rebalance import budget_used_msat

    channel = RebalanceBudgetReserved(rebalance_id="chop-1", source_region="eu", day=DAY,
                                      reserved_msat=OPEN_FEE_MSAT, used_before_msat=0,
                                      budget_msat=MIXED_BUDGET_MSAT)  # fmt: skip
    move = RebalanceBudgetReserved(rebalance_id="rbl-1", source_region="eu", day=DAY,
                                   reserved_msat=20_000, used_before_msat=0,
                                   budget_msat=MIXED_BUDGET_MSAT)  # fmt: skip
    spent = RebalanceBudgetReleased(rebalance_id="chop-1", source_region="eu", day=DAY,
                                    spent_msat=OPEN_FEE_MSAT, released_msat=0)  # fmt: skip
    recorded = [
        {"type": type(e).__name__, "data": msgspec.to_builtins(e)} for e in (channel, move, spent)
    ]
    assert budget_used_msat(recorded) == 20_000
    day = fold_budget([channel, move, spent])
    assert day is not None
    assert (day.channel_used_msat, day.rebalance_used_msat) == (OPEN_FEE_MSAT, 20_000)
    assert day.used_msat == OPEN_FEE_MSAT + 20_000
