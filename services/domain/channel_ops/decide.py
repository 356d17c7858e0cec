"""``decide``: a command against a channel operation's state, to events or a refusal. Pure:
the operation id, the request fingerprint, the caller and the policy arrive in the context.

Idempotent like a payment: the same key with the same request answers from the state (no
event); the same key with another request is refused. The on-chain fee the transaction will
cost (fixed virtual size times the rate, ADR 0230) is checked against the caller's budget and
the policy's limit before anything is dispatched; a refusal there is a ``ChannelOpRejected``
event, so the audit trail shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeVar

import msgspec

from schemas import channel_messages as cm
from schemas.commands import ApprovePaymentIntent, RejectPaymentIntent
from schemas.common import Caller
from schemas.events import EventData
from services.domain.channel_ops.budget import FEE_BUDGET_EXHAUSTED, FeeBudget, fits
from services.domain.channel_ops.state import ChannelOp, ChannelOpStatus

MSAT_PER_SAT: Final = 1000
# 100k sat a day per region: some 650 funding transactions at 1 sat/vB, 20 at 33 sat/vB. The
# rebalance budget (100 sat by default) is far too small for one on-chain fee (ADR 0285).
CHANNEL_FEE_BUDGET_MSAT_PER_DAY: Final = 100_000 * MSAT_PER_SAT


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelPolicy:
    """Limits for channel operations: the channel tier and the on-chain fee budget."""

    # Opens above this need an operator's approval (tier "approval").
    auto_open_msat_max: int
    # No open above this, approved or not.
    open_msat_max: int
    # The most one operation may spend on its transaction's fee.
    onchain_fee_msat_max: int
    # The most the region's day budget stream may hold with a channel fee in it (ADR 0285).
    fee_budget_msat_per_day: int = CHANNEL_FEE_BUDGET_MSAT_PER_DAY


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelOpContext:
    op_id: str  # derived from (caller, idempotency key) by the service layer
    request_fingerprint: str
    caller: Caller
    policy: ChannelPolicy
    # Today's fee budget of the command's region (ADR 0285); ``None``: fees are not budgeted.
    fee_budget: FeeBudget | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A command that changes nothing: ``code`` and the ``field`` it is about."""

    code: str
    field: str | None = None


Decision = list[EventData] | Refusal


# An operator's decision on an open waiting in tier ``approval`` (ADR 0236): the payment
# approval commands, addressed to the operation's id.
OperatorDecision = ApprovePaymentIntent | RejectPaymentIntent


def decide(
    state: ChannelOp | None,
    command: cm.OpenChannel | cm.CloseChannel | cm.RecordChannelOpReport | OperatorDecision,
    ctx: ChannelOpContext,
) -> Decision:
    if isinstance(command, cm.RecordChannelOpReport):
        return _report(state, command)
    if isinstance(command, ApprovePaymentIntent | RejectPaymentIntent):
        return _operator_decision(state, command, ctx)
    if state is not None:
        if state.request_fingerprint != ctx.request_fingerprint:
            return Refusal("idempotency_key_reused", "idempotency_key")
        return []  # the same request again: answered from the state
    event = _open(command, ctx) if isinstance(command, cm.OpenChannel) else _close(command, ctx)
    reserved: EventData | Refusal = event
    if isinstance(event, cm.ChannelCloseRequested):
        reserved = _reserve(event, ctx)
    elif isinstance(event, cm.ChannelOpenRequested) and event.tier == "auto":
        reserved = _reserve(event, ctx)  # tier approval: reserved when an operator approves
    return reserved if isinstance(reserved, Refusal) else [reserved]


_E = TypeVar("_E", cm.ChannelOpenRequested, cm.ChannelCloseRequested, cm.ChannelOpenApproved)


def _reserve(event: _E, ctx: ChannelOpContext) -> _E | Refusal:
    """The event naming the budget stream its fee is held on, or a refusal when the day's
    budget cannot hold it (ADR 0285)."""
    budget = ctx.fee_budget
    if budget is None:
        return event
    if not fits(budget, event.onchain_fee_msat):
        return Refusal(FEE_BUDGET_EXHAUSTED, "max_onchain_fee_msat")
    return msgspec.structs.replace(event, budget_stream=budget.stream_id)


def _rejected(
    command: cm.OpenChannel | cm.CloseChannel,
    ctx: ChannelOpContext,
    reason: cm.RejectReason,
    detail: str,
) -> cm.ChannelOpRejected:
    return cm.ChannelOpRejected(
        op_id=ctx.op_id,
        kind="open" if isinstance(command, cm.OpenChannel) else "close",
        caller=ctx.caller,
        idempotency_key=command.idempotency_key,
        request_fingerprint=ctx.request_fingerprint,
        reason=reason,
        detail=detail,
    )


def _fee_refusal(
    command: cm.OpenChannel | cm.CloseChannel, ctx: ChannelOpContext, fee_msat: int
) -> cm.ChannelOpRejected | None:
    budget_msat = min(command.max_onchain_fee_msat, ctx.policy.onchain_fee_msat_max)
    if fee_msat > budget_msat:
        return _rejected(
            command, ctx, "fee_over_budget", f"fee {fee_msat} msat over budget {budget_msat}"
        )
    return None


def _open(command: cm.OpenChannel, ctx: ChannelOpContext) -> EventData:
    if command.local_amount_msat % MSAT_PER_SAT or command.push_msat % MSAT_PER_SAT:
        return _rejected(command, ctx, "not_whole_sats", "on-chain amounts are whole satoshis")
    if command.push_msat >= command.local_amount_msat:
        return _rejected(command, ctx, "amount_over_limit", "push_msat must be below the amount")
    if command.local_amount_msat > ctx.policy.open_msat_max:
        return _rejected(
            command, ctx, "amount_over_limit", f"opens are limited to {ctx.policy.open_msat_max}"
        )
    fee_msat = command.sat_per_vbyte * cm.FUNDING_TX_VSIZE * MSAT_PER_SAT
    refused = _fee_refusal(command, ctx, fee_msat)
    if refused is not None:
        return refused
    tier: cm.ChannelTier = (
        "auto" if command.local_amount_msat <= ctx.policy.auto_open_msat_max else "approval"
    )
    return cm.ChannelOpenRequested(
        op_id=ctx.op_id, caller=ctx.caller, idempotency_key=command.idempotency_key,
        request_fingerprint=ctx.request_fingerprint, region=command.region, node=command.node,
        peer_pubkey=command.peer_pubkey, local_amount_msat=command.local_amount_msat,
        push_msat=command.push_msat, sat_per_vbyte=command.sat_per_vbyte,
        max_onchain_fee_msat=command.max_onchain_fee_msat, onchain_fee_msat=fee_msat, tier=tier,
    )  # fmt: skip


def _close(command: cm.CloseChannel, ctx: ChannelOpContext) -> EventData:
    fee_msat = command.sat_per_vbyte * cm.CLOSING_TX_VSIZE * MSAT_PER_SAT
    refused = _fee_refusal(command, ctx, fee_msat)
    if refused is not None:
        return refused
    return cm.ChannelCloseRequested(
        op_id=ctx.op_id, caller=ctx.caller, idempotency_key=command.idempotency_key,
        request_fingerprint=ctx.request_fingerprint, region=command.region, node=command.node,
        channel_point=command.channel_point, sat_per_vbyte=command.sat_per_vbyte,
        max_onchain_fee_msat=command.max_onchain_fee_msat, onchain_fee_msat=fee_msat,
        tier="auto",
    )  # fmt: skip


def _operator_decision(
    state: ChannelOp | None, command: OperatorDecision, ctx: ChannelOpContext
) -> Decision:
    """Approve or decline an open of tier ``approval``: once, by an operator other than the
    one who asked (the two-person rule, as for payments). The approval repeats the request,
    so the executor's order carries exactly what was judged."""
    if state is None or state.op_id != command.intent_id:
        return Refusal("unknown_op", "intent_id")
    if state.tier != "approval":
        return Refusal("not_awaiting_approval", "intent_id")
    approving = isinstance(command, ApprovePaymentIntent)
    if state.approved_by is not None or state.status is not ChannelOpStatus.REQUESTED:
        decided_alike = (state.approved_by == ctx.caller.id) if approving else (
            state.rejection == "declined"
        )  # fmt: skip
        return [] if decided_alike else Refusal("already_decided", "intent_id")
    if ctx.caller.id == state.caller.id:
        return Refusal("two_person_rule", "operator_id")
    if not approving:
        assert isinstance(command, RejectPaymentIntent)
        return [cm.ChannelOpDeclined(
            op_id=state.op_id, declined_by=ctx.caller.id, reason=command.reason,
        )]  # fmt: skip
    assert isinstance(command, ApprovePaymentIntent) and state.open_request is not None
    request = msgspec.structs.asdict(state.open_request) | {"key_id": None, "signature": None}
    approved = cm.ChannelOpenApproved(**request, approved_by=ctx.caller.id, note=command.note)
    reserved = _reserve(approved, ctx)
    return reserved if isinstance(reserved, Refusal) else [reserved]


def _report(state: ChannelOp | None, report: cm.RecordChannelOpReport) -> Decision:
    """An executor's report. A duplicate (redelivery) changes nothing; a report that
    contradicts the recorded transaction is refused, never recorded over it."""
    if state is None or state.op_id != report.op_id:
        return Refusal("unknown_op", "op_id")
    if state.status is ChannelOpStatus.REJECTED:
        return Refusal("op_rejected", "op_id")
    if report.stage == "broadcast":
        if report.txid is None:
            return Refusal("missing_txid", "txid")
        if state.status is not ChannelOpStatus.REQUESTED:
            return [] if report.txid == state.txid else Refusal("conflicting_txid", "txid")
        if state.kind == "open":
            if report.channel_point is None or not report.channel_point.startswith(report.txid):
                return Refusal("channel_point_mismatch", "channel_point")
            opening = cm.ChannelOpening(
                op_id=state.op_id, funding_txid=report.txid, channel_point=report.channel_point
            )
            return [opening]
        return [cm.ChannelClosing(op_id=state.op_id, closing_txid=report.txid)]
    if state.status is ChannelOpStatus.COMPLETED:
        return []
    if state.status is not ChannelOpStatus.BROADCAST:
        return Refusal("not_broadcast_yet", "stage")
    if state.kind == "open":
        if not report.channel_id:
            return Refusal("missing_channel_id", "channel_id")
        return [cm.ChannelOpened(op_id=state.op_id, channel_id=report.channel_id)]
    return [cm.ChannelClosed(op_id=state.op_id)]
