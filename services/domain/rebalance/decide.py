"""``decide``: the events a rebalance command leads to, given its state and the fee budget
of the day it is judged against. Pure: the rebalance id, the fingerprint, the clock and the
rules arrive in the context (ADR 0244, 0245).

Idempotent like a payment: the same caller and key with the same request records nothing
new; with another request it is ``idempotency_mismatch``. A request is judged against the
source region's fee budget of the UTC day: its whole ``max_fee_msat`` must fit in what the
day has not spent or reserved, else it is ``RebalanceRejected`` (audited, nothing sent). An
executor's report that the log already has records nothing; a success is recorded once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from schemas import errors
from schemas.commands import RecordPaymentOutcome
from schemas.events import EventData, InvoiceFacts, Tier
from schemas.rebalance_messages import (
    ApproveRebalance,
    RebalanceApproved,
    RebalanceBudgetReleased,
    RebalanceBudgetReserved,
    RebalanceDispatched,
    RebalanceFailed,
    RebalanceInFlight,
    RebalanceProposed,
    RebalanceRejected,
    RebalanceRequested,
    RebalanceSucceeded,
    RequestRebalance,
    budget_day,
    budget_stream_id,
)
from services.domain.rebalance.budget import DayBudget
from services.domain.rebalance.evolve import evolve
from services.domain.rebalance.ours import NodeDirectory, not_ours
from services.domain.rebalance.state import ENDED_STATUSES, Rebalance
from services.domain.rebalance.state import RebalanceStatus as S


@dataclass(frozen=True, kw_only=True, slots=True)
class RebalanceRules:
    """The engine's rebalance policy: its tier and its budget (ADR 0244, 0245)."""

    # Moves up to this are tier ``auto``; larger ones wait for an approval (not dispatched).
    auto_amount_msat_max: int
    # Fees each source region may spend (or hold for open moves) per UTC day.
    fee_budget_msat_per_day: int
    # The executor's send timeout, as for a payment.
    pay_timeout_s: int

    def __post_init__(self) -> None:
        assert self.auto_amount_msat_max >= 0 and self.fee_budget_msat_per_day >= 0
        assert self.pay_timeout_s >= 1


@dataclass(frozen=True, kw_only=True, slots=True)
class RebalanceContext:
    now_ms: int
    rules: RebalanceRules
    # For RequestRebalance: derived from (caller id, idempotency key) by the service layer.
    rebalance_id: str | None = None
    request_fingerprint: str | None = None
    # The budget stream judged: today's of the source region for a request, the rebalance's
    # own for a report. ``None``: the stream is empty.
    budget: DayBudget | None = None
    # The request's ``payment_request`` as the service layer decoded it (ADR 0248).
    invoice: InvoiceFacts | None = None
    # Our nodes and their pubkeys as the engine knows them (ADR 0249): a move to any other
    # is refused. Empty: the engine knows no node, so it moves nothing.
    nodes: NodeDirectory = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decided:
    """Events for the rebalance's stream, and for its budget stream."""

    events: list[EventData] = field(default_factory=list)
    budget: list[EventData] = field(default_factory=list)


def decide(
    state: Rebalance | None,
    command: RequestRebalance | ApproveRebalance | RecordPaymentOutcome,
    ctx: RebalanceContext,
) -> Decided:
    if isinstance(command, RequestRebalance):
        return _request(state, command, ctx)
    if isinstance(command, ApproveRebalance):
        return approve(state, command, ctx)
    if state is None:
        raise errors.NotFound(f"no rebalance {command.intent_id}", field="intent_id")
    return _report(state, command, ctx)


def budget_stream_for(command: RequestRebalance, now_ms: int) -> str:
    return budget_stream_id(command.source_region, budget_day(now_ms))


def _request(state: Rebalance | None, command: RequestRebalance, ctx: RebalanceContext) -> Decided:
    assert ctx.rebalance_id is not None and ctx.request_fingerprint is not None
    if state is not None:
        if state.request_fingerprint != ctx.request_fingerprint:
            raise errors.IdempotencyMismatch(
                "idempotency_key was already used with a different request",
                field="idempotency_key",
            )
        return Decided()
    if command.caller.kind != "service":
        # A rebalance moves the business's own funds: the planner's service credential asks.
        raise errors.Forbidden("rebalances are requested by a service caller", field="caller")
    if command.dry_run:
        return Decided([_proposed(command, ctx)])
    tier: Tier = "auto" if command.amount_msat <= ctx.rules.auto_amount_msat_max else "approval"
    requested = RebalanceRequested(
        rebalance_id=ctx.rebalance_id, caller=command.caller,
        idempotency_key=command.idempotency_key, request_fingerprint=ctx.request_fingerprint,
        mode=command.mode, source_region=command.source_region, source_node=command.source_node,
        target_region=command.target_region, target_node=command.target_node,
        destination=command.destination, amount_msat=command.amount_msat,
        max_fee_msat=command.max_fee_msat, explanation=dict(command.explanation), tier=tier,
        received_at_ms=ctx.now_ms, budget_stream=budget_stream_for(command, ctx.now_ms),
        outgoing_channel_id=command.outgoing_channel_id, last_hop_pubkey=command.last_hop_pubkey,
        payment_request=command.payment_request,
        payment_hash=ctx.invoice.payment_hash if ctx.invoice is not None else None,
    )  # fmt: skip
    refusal = _refusal(command, ctx)
    if refusal is not None:
        return Decided([requested, refusal])
    if tier != "auto":
        return Decided([requested])  # waits for an approval; nothing reserved or sent
    order, reserve = _dispatch(evolve(None, requested), ctx)
    return Decided([requested, order], [reserve])


def _dispatch(
    state: Rebalance, ctx: RebalanceContext
) -> tuple[RebalanceDispatched, RebalanceBudgetReserved]:
    """The signed-to-be order and its fee's reservation on today's budget of the source."""
    used = ctx.budget.rebalance_used_msat if ctx.budget is not None else 0
    reserve = RebalanceBudgetReserved(
        rebalance_id=state.rebalance_id, source_region=state.source_region,
        day=budget_day(ctx.now_ms), reserved_msat=state.max_fee_msat, used_before_msat=used,
        budget_msat=ctx.rules.fee_budget_msat_per_day,
    )  # fmt: skip
    order = RebalanceDispatched(
        region=state.source_region, node=state.source_node, destination=state.destination,
        amount_msat=state.amount_msat, max_fee_msat=state.max_fee_msat,
        pay_timeout_s=ctx.rules.pay_timeout_s, outgoing_channel_id=state.outgoing_channel_id,
        last_hop_pubkey=state.last_hop_pubkey, payment_request=state.payment_request,
        payment_hash=state.invoice_payment_hash,
    )  # fmt: skip
    return order, reserve


def approve(state: Rebalance | None, command: ApproveRebalance, ctx: RebalanceContext) -> Decided:
    """An operator's approval of a move over the auto limit: judged against today's budget of
    its source region (``ctx.budget``), then dispatched, or rejected past the budget. An
    approval of a move already past it records nothing."""
    if state is None:
        raise errors.NotFound(f"no rebalance {command.rebalance_id}", field="rebalance_id")
    if state.status is not S.AWAITING_APPROVAL or state.tier != "approval":
        if state.status in (S.PROPOSED, S.REJECTED):
            raise errors.InvalidTransition(
                f"rebalance {state.rebalance_id} is {state.status}: nothing to approve",
                field="rebalance_id",
            )
        return Decided()  # approved already, or never needed it (auto)
    outside = not_ours(state, ctx.nodes)  # judged again: the directory may have changed
    if outside is not None:
        return Decided([outside])
    approved = RebalanceApproved(
        operator_id=command.operator_id,
        budget_stream=budget_stream_id(state.source_region, budget_day(ctx.now_ms)),
    )
    refusal = _budget_refusal(state.source_region, state.max_fee_msat, ctx)
    if refusal is not None:
        return Decided([approved, refusal])
    order, reserve = _dispatch(evolve(state, approved), ctx)
    return Decided([approved, order], [reserve])


def _proposed(command: RequestRebalance, ctx: RebalanceContext) -> RebalanceProposed:
    assert ctx.rebalance_id is not None and ctx.request_fingerprint is not None
    return RebalanceProposed(
        rebalance_id=ctx.rebalance_id, caller=command.caller,
        idempotency_key=command.idempotency_key, request_fingerprint=ctx.request_fingerprint,
        mode=command.mode, source_region=command.source_region, source_node=command.source_node,
        target_region=command.target_region, target_node=command.target_node,
        destination=command.destination, amount_msat=command.amount_msat,
        max_fee_msat=command.max_fee_msat, explanation=dict(command.explanation),
        proposed_at_ms=ctx.now_ms,
    )  # fmt: skip


def _invoice_refusal(command: RequestRebalance, ctx: RebalanceContext) -> RebalanceRejected | None:
    """A move paid by the target's invoice (ADR 0248): the invoice must be for this move."""
    if command.payment_request is None:
        return None
    invoice = ctx.invoice
    assert invoice is not None, "the service layer decodes a request's invoice"
    if command.mode != "cross_region":
        detail = "an invoice is paid by cross-region moves only"
    elif invoice.payee != command.destination:
        detail = "the invoice is not the destination's"
    elif invoice.amount_msat != command.amount_msat:
        detail = "the invoice must ask exactly amount_msat"
    elif invoice.expires_at_s * 1000 <= ctx.now_ms:
        detail = "the invoice has expired"
    else:
        return None
    return RebalanceRejected(reason="bad_invoice", detail=detail)


def _refusal(command: RequestRebalance, ctx: RebalanceContext) -> RebalanceRejected | None:
    circle = (command.outgoing_channel_id, command.last_hop_pubkey)
    if command.mode == "circular":
        same_node = (command.source_region, command.source_node) == (
            command.target_region, command.target_node,
        )  # fmt: skip
        if not same_node or None in circle:
            return RebalanceRejected(
                reason="bad_circle",
                detail="a circular move goes from a node back to itself, with "
                "outgoing_channel_id and last_hop_pubkey",
            )
    elif circle != (None, None):
        return RebalanceRejected(
            reason="bad_circle", detail="outgoing_channel_id and last_hop_pubkey are for circles"
        )
    elif command.source_region == command.target_region:
        return RebalanceRejected(
            reason="same_region", detail="a cross-region move needs two regions"
        )
    outside = not_ours(command, ctx.nodes)  # before the invoice: its payee is the destination
    if outside is not None:
        return outside
    invoice_refusal = _invoice_refusal(command, ctx)
    if invoice_refusal is not None:
        return invoice_refusal
    return _budget_refusal(command.source_region, command.max_fee_msat, ctx)


def _budget_refusal(
    source_region: str, max_fee_msat: int, ctx: RebalanceContext
) -> RebalanceRejected | None:
    used = ctx.budget.rebalance_used_msat if ctx.budget is not None else 0
    left = max(0, ctx.rules.fee_budget_msat_per_day - used)
    if max_fee_msat > left:
        return RebalanceRejected(
            reason="fee_budget_exhausted",
            detail=f"max_fee_msat {max_fee_msat} over the {left} msat {source_region} has "
            "left today",
        )
    return None


def _report(state: Rebalance, report: RecordPaymentOutcome, ctx: RebalanceContext) -> Decided:
    if (
        state.node is None
        or report.attempt != state.attempt
        or report.node != state.node
        or report.region != state.node_region
    ):
        raise errors.CorridorError(
            f"rebalance {state.rebalance_id} was not dispatched to {report.region}/{report.node}",
            field="node",
            code="wrong_node",
        )
    match report.outcome:
        case "in_flight":
            if state.status is S.DISPATCHED:
                return Decided([RebalanceInFlight(payment_hash=report.payment_hash)])
            return Decided()  # in flight already, or ended: a stale report
        case "succeeded":
            return _succeeded(state, report, ctx)
        case "failed":
            return _failed(state, report, ctx)
    raise AssertionError(report.outcome)


def _release(state: Rebalance, ctx: RebalanceContext, spent_msat: int) -> RebalanceBudgetReleased:
    assert ctx.budget is not None and state.budget_stream is not None
    reserved = ctx.budget.open_msat.get(state.rebalance_id)
    assert reserved is not None, "a dispatched rebalance holds its reservation until it ends"
    return RebalanceBudgetReleased(
        rebalance_id=state.rebalance_id, source_region=state.source_region,
        day=int(state.budget_stream.rsplit("-", 1)[1]), spent_msat=spent_msat,
        released_msat=max(0, reserved - spent_msat),
    )  # fmt: skip


def _succeeded(state: Rebalance, report: RecordPaymentOutcome, ctx: RebalanceContext) -> Decided:
    if report.preimage is None or report.fee_msat is None:
        raise errors.MissingField("a success needs preimage and fee_msat", field="preimage")
    payment_hash = hashlib.sha256(bytes.fromhex(report.preimage)).hexdigest()
    if report.payment_hash is not None and report.payment_hash != payment_hash:
        raise errors.CorridorError(
            "the preimage does not hash to the payment hash", field="preimage",
            code="invalid_preimage",
        )  # fmt: skip
    if state.status is S.SUCCEEDED:
        return Decided()  # recorded once: a redelivered order reports it again
    if state.status is S.FAILED:
        raise errors.InvalidTransition(
            f"rebalance {state.rebalance_id} failed with the node's proof, yet it reports it paid",
            field="outcome",
        )
    succeeded = RebalanceSucceeded(
        payment_hash=payment_hash, preimage=report.preimage, fee_msat=report.fee_msat
    )
    return Decided([succeeded], [_release(state, ctx, report.fee_msat)])


def _failed(state: Rebalance, report: RecordPaymentOutcome, ctx: RebalanceContext) -> Decided:
    if state.status in ENDED_STATUSES:
        return Decided()  # ended already: a stale report of an earlier delivery
    if not report.confirmed_not_paid:
        # Without the node's proof the move may still pay: it stays on the wire (ADR 0203).
        raise errors.CorridorError(
            "a failure is recorded only with the node's proof", field="confirmed_not_paid",
            code="unproven_failure",
        )  # fmt: skip
    failed = RebalanceFailed(
        reason=report.failure_reason or "failed", detail=report.detail,
        payment_hash=report.payment_hash,
    )  # fmt: skip
    return Decided([failed], [_release(state, ctx, 0)])
