"""The channel-operation aggregate (pure): idempotency, the fee budget and tier, and a
Hypothesis state machine against a plain model: one broadcast and one completion per
operation, whatever the executor reports and however often."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from schemas import channel_messages as cm
from schemas.commands import ApprovePaymentIntent, RejectPaymentIntent
from schemas.common import Caller
from services.domain.channel_ops import (
    ChannelOp,
    ChannelOpContext,
    ChannelOpStatus,
    ChannelPolicy,
    Refusal,
    decide,
    replay,
)

CALLER = Caller(id="ops-1", kind="human")
POLICY = ChannelPolicy(
    auto_open_msat_max=5_000_000_000, open_msat_max=50_000_000_000, onchain_fee_msat_max=10_000_000
)
PEER = "02" + "ab" * 32
TXID = "cd" * 32


def ctx(fingerprint: str = "f1", op_id: str = "op_1") -> ChannelOpContext:
    return ChannelOpContext(
        op_id=op_id, request_fingerprint=fingerprint, caller=CALLER, policy=POLICY
    )


def open_command(
    amount_msat: int = 1_000_000_000, rate: int = 10, **fields: object
) -> cm.OpenChannel:
    values: dict[str, object] = {
        "idempotency_key": "k1", "region": "us", "node": "us-lnd", "peer_pubkey": PEER,
        "local_amount_msat": amount_msat, "sat_per_vbyte": rate, "max_onchain_fee_msat": 5_000_000,
    }  # fmt: skip
    values.update(fields)
    return cm.OpenChannel(**values)  # type: ignore[arg-type]


def report(stage: str, txid: str = TXID, **fields: object) -> cm.RecordChannelOpReport:
    return cm.RecordChannelOpReport(op_id="op_1", stage=stage, txid=txid, **fields)  # type: ignore[arg-type]


def run(*commands: object, fingerprint: str = "f1") -> tuple[ChannelOp | None, list[object]]:
    events: list[object] = []
    state = None
    for command in commands:
        decision = decide(state, command, ctx(fingerprint))  # type: ignore[arg-type]
        assert not isinstance(decision, Refusal), decision
        events += decision
        state = replay(events)  # type: ignore[arg-type]
    return state, events


def test_open_lifecycle_and_fee() -> None:
    state, events = run(
        open_command(),
        report("broadcast", channel_point=f"{TXID}:0"),
        report("final", channel_id="801x1x0"),
    )
    assert state is not None and state.status is ChannelOpStatus.COMPLETED
    assert [type(e).__name__ for e in events] == [
        "ChannelOpenRequested", "ChannelOpening", "ChannelOpened",
    ]  # fmt: skip
    requested = events[0]
    assert isinstance(requested, cm.ChannelOpenRequested)
    assert (
        requested.onchain_fee_msat == 10 * cm.FUNDING_TX_VSIZE * 1000 and requested.tier == "auto"
    )
    assert (state.channel_point, state.channel_id, state.version) == (f"{TXID}:0", "801x1x0", 3)


def test_idempotent_by_key_and_refused_for_another_request() -> None:
    state, _ = run(open_command())
    assert decide(state, open_command(), ctx()) == []
    refused = decide(state, open_command(amount_msat=2_000_000_000), ctx("f2"))
    assert refused == Refusal("idempotency_key_reused", "idempotency_key")


def test_budget_tier_and_whole_sats() -> None:
    over = decide(None, open_command(rate=200), ctx())
    assert isinstance(over, list) and isinstance(over[0], cm.ChannelOpRejected)
    assert over[0].reason == "fee_over_budget"
    fractional = decide(None, open_command(amount_msat=1_000_500), ctx())
    assert isinstance(fractional, list) and fractional[0].reason == "not_whole_sats"  # type: ignore[union-attr]
    big = decide(None, open_command(amount_msat=10_000_000_000), ctx())
    assert isinstance(big, list) and big[0].tier == "approval"  # type: ignore[union-attr]
    too_big = decide(None, open_command(amount_msat=60_000_000_000), ctx())
    assert isinstance(too_big, list) and too_big[0].reason == "amount_over_limit"  # type: ignore[union-attr]


def test_close_charges_the_closing_size() -> None:
    close = cm.CloseChannel(
        idempotency_key="k2", region="us", node="us-lnd", channel_point=f"{TXID}:1",
        sat_per_vbyte=4, max_onchain_fee_msat=1_000_000,
    )  # fmt: skip
    state, events = run(close, report("broadcast", txid="ef" * 32), report("final"))
    assert isinstance(events[0], cm.ChannelCloseRequested)
    assert events[0].onchain_fee_msat == 4 * cm.CLOSING_TX_VSIZE * 1000
    assert state is not None and state.status is ChannelOpStatus.COMPLETED


def test_reports_that_contradict_the_record_are_refused() -> None:
    state, _ = run(open_command(), report("broadcast", channel_point=f"{TXID}:0"))
    other = "ee" * 32
    assert decide(state, report("broadcast", txid=other, channel_point=f"{other}:0"), ctx()) == (
        Refusal("conflicting_txid", "txid")
    )
    fresh, _ = run(open_command())
    assert decide(fresh, report("final", channel_id="1x1x1"), ctx()) == Refusal(
        "not_broadcast_yet", "stage"
    )
    assert decide(None, report("broadcast"), ctx()) == Refusal("unknown_op", "op_id")


class ChannelOpMachine(RuleBasedStateMachine):
    """Commands and executor reports in any order and number; the model is a list of stages."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[object] = []
        self.state: ChannelOp | None = None
        self.model_stages: list[str] = []

    def _apply(self, command: object, fingerprint: str = "f1") -> None:
        decision = decide(self.state, command, ctx(fingerprint))  # type: ignore[arg-type]
        if isinstance(decision, Refusal):
            return
        self.events += decision
        self.state = replay(self.events)  # type: ignore[arg-type]

    @rule(fingerprint=st.sampled_from(["f1", "f2"]), rate=st.sampled_from([1, 10, 500]))
    def request_open(self, fingerprint: str, rate: int) -> None:
        before = self.state
        self._apply(open_command(rate=rate), fingerprint)
        if before is None:
            self.model_stages.append("rejected" if rate == 500 else "requested")

    @rule(txid=st.sampled_from([TXID, "ee" * 32]))
    def report_broadcast(self, txid: str) -> None:
        before = self.state
        self._apply(report("broadcast", txid=txid, channel_point=f"{txid}:0"))
        if before is not None and before.status is ChannelOpStatus.REQUESTED:
            self.model_stages.append("broadcast")

    @rule()
    def report_final(self) -> None:
        before = self.state
        self._apply(report("final", channel_id="900x1x0"))
        if before is not None and before.status is ChannelOpStatus.BROADCAST:
            self.model_stages.append("completed")

    @invariant()
    def one_of_each_stage_in_order(self) -> None:
        names = [type(e).__name__ for e in self.events]
        assert names.count("ChannelOpening") <= 1 and names.count("ChannelOpened") <= 1
        expected = {"requested": 1, "rejected": 1, "broadcast": 2, "completed": 3}
        assert len(self.events) == (expected[self.model_stages[-1]] if self.model_stages else 0)
        if self.state is not None:
            assert self.state.version == len(self.events)
            assert self.state.status.value == self.model_stages[-1]


TestChannelOpMachine = ChannelOpMachine.TestCase


def approve(operator: str, op_id: str = "op_1") -> tuple[object, ChannelOpContext]:
    command = ApprovePaymentIntent(intent_id=op_id, operator_id=operator, note="ok")
    return command, ChannelOpContext(
        op_id=op_id, request_fingerprint="", caller=Caller(id=operator, kind="human"),
        policy=POLICY,
    )  # fmt: skip


def test_a_large_open_waits_for_a_second_operator_and_the_approval_repeats_it() -> None:
    """ADR 0236: tier approval is released by another operator, once; the approval carries the
    request as judged (the executor's order), and the requester cannot approve it."""
    state, events = run(open_command(amount_msat=POLICY.auto_open_msat_max + 1000, push_msat=0))
    assert state is not None and state.tier == "approval"
    command, own = approve(CALLER.id)
    assert decide(state, command, own) == Refusal("two_person_rule", "operator_id")  # type: ignore[arg-type]
    command, other = approve("ops-2")
    decision = decide(state, command, other)  # type: ignore[arg-type]
    assert isinstance(decision, list)
    (approved,) = decision
    assert isinstance(approved, cm.ChannelOpenApproved) and approved.approved_by == "ops-2"
    request = events[0]
    assert isinstance(request, cm.ChannelOpenRequested)
    for name in ("peer_pubkey", "local_amount_msat", "sat_per_vbyte", "node", "region", "tier"):
        assert getattr(approved, name) == getattr(request, name), name
    after = replay([*events, approved])  # type: ignore[list-item]
    assert after is not None and after.approved_by == "ops-2"
    assert after.status is ChannelOpStatus.REQUESTED
    assert decide(after, command, other) == []  # a repeated approval changes nothing
    third, ctx3 = approve("ops-3")
    assert decide(after, third, ctx3) == Refusal("already_decided", "intent_id")  # type: ignore[arg-type]


def test_a_declined_open_ends_rejected_and_an_auto_open_needs_no_approval() -> None:
    state, events = run(open_command(amount_msat=POLICY.auto_open_msat_max + 1000))
    assert state is not None
    decline = RejectPaymentIntent(intent_id="op_1", operator_id="ops-2", reason="too big")
    _, other = approve("ops-2")
    decision = decide(state, decline, other)
    assert isinstance(decision, list) and isinstance(decision[0], cm.ChannelOpDeclined)
    after = replay([*events, *decision])  # type: ignore[list-item]
    assert after is not None and after.status is ChannelOpStatus.REJECTED
    assert after.rejection == "declined"
    command, _ = approve("ops-2")
    assert decide(after, command, other) == Refusal("already_decided", "intent_id")  # type: ignore[arg-type]
    small, _ = run(open_command())
    assert decide(small, command, other) == Refusal("not_awaiting_approval", "intent_id")  # type: ignore[arg-type]
    over = decide(None, open_command(amount_msat=POLICY.open_msat_max + 1000), ctx())
    assert isinstance(over, list) and isinstance(over[0], cm.ChannelOpRejected)
