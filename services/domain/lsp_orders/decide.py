"""``decide``: a command against an LSP order's state, to events or a refusal. Pure: the order
id, the request fingerprint, the caller, the policy and the time arrive in the context.

Idempotent like a payment: the same key with the same request answers from the state; the
same key with another request is refused. The LSP's quote is checked before anything is paid
(bLIP-51's "client SHOULD validate"): fee within the operator's budget, ``order_total`` =
``fee_total`` + ``client_balance``, the invoice for exactly that amount and payable to the LSP
we asked, not expired yet. Only then the payment is requested, once, with the order's key.
Executor reports that repeat what the state already says change nothing (redelivery).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schemas import lsp_messages as lm
from schemas.common import Caller
from schemas.events import EventData
from services.domain.lsp_orders.state import LspOrder, LspOrderStatus

MSAT_PER_SAT: Final = 1000
_S = LspOrderStatus


@dataclass(frozen=True, kw_only=True, slots=True)
class LspOrderPolicy:
    # The most inbound one order may buy (the LSP's side of the channel).
    lsp_balance_msat_max: int
    # How long the LSP has to answer create_order before the order fails unpaid.
    answer_window_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class LspOrderContext:
    lsp_order_id: str
    request_fingerprint: str
    caller: Caller
    policy: LspOrderPolicy
    now_ms: int


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    field: str | None = None


Decision = list[EventData] | Refusal


def decide(
    state: LspOrder | None,
    command: lm.OrderLspChannel | lm.RecordLspOrderReport,
    ctx: LspOrderContext,
) -> Decision:
    if isinstance(command, lm.RecordLspOrderReport):
        if state is None or state.lsp_order_id != command.lsp_order_id:
            return Refusal("unknown_order", "lsp_order_id")
        return _report(state, command, ctx)
    if state is not None:
        if state.request_fingerprint != ctx.request_fingerprint:
            return Refusal("idempotency_key_reused", "idempotency_key")
        return []
    return [_order(command, ctx)]


def _order(command: lm.OrderLspChannel, ctx: LspOrderContext) -> EventData:
    whole = command.lsp_balance_msat % MSAT_PER_SAT == 0
    if not whole or command.client_balance_msat % MSAT_PER_SAT:
        return _rejected(command, ctx, "not_whole_sats", "LSPS1 amounts are whole satoshis")
    if command.lsp_balance_msat > ctx.policy.lsp_balance_msat_max:
        limit = ctx.policy.lsp_balance_msat_max
        return _rejected(command, ctx, "amount_over_limit", f"one order buys at most {limit}")
    return lm.LspOrderRequested(
        lsp_order_id=ctx.lsp_order_id, caller=ctx.caller, idempotency_key=command.idempotency_key,
        request_fingerprint=ctx.request_fingerprint, region=command.region, node=command.node,
        lsp_pubkey=command.lsp_pubkey, lsp_balance_msat=command.lsp_balance_msat,
        client_balance_msat=command.client_balance_msat,
        channel_expiry_blocks=command.channel_expiry_blocks, max_fee_msat=command.max_fee_msat,
        max_routing_fee_msat=command.max_routing_fee_msat,
        announce_channel=command.announce_channel, token=command.token,
        requested_at_ms=ctx.now_ms, answer_deadline_ms=ctx.now_ms + ctx.policy.answer_window_ms,
        corridor=command.corridor or "",
    )  # fmt: skip


def _rejected(
    command: lm.OrderLspChannel, ctx: LspOrderContext, reason: lm.RejectReason, detail: str
) -> EventData:
    return lm.LspOrderRejected(
        lsp_order_id=ctx.lsp_order_id, caller=ctx.caller, idempotency_key=command.idempotency_key,
        request_fingerprint=ctx.request_fingerprint, reason=reason, detail=detail,
    )  # fmt: skip


def _report(state: LspOrder, report: lm.RecordLspOrderReport, ctx: LspOrderContext) -> Decision:
    if state.terminal:
        return []  # a late or repeated report: the order's end is recorded
    order_id = state.lsp_order_id
    match report.stage:
        case "created":
            return _created(state, report, ctx)
        case "refused":
            if state.status is not _S.REQUESTED:
                return Refusal("not_requested", "stage")
            if report.refusal_code is None:
                return Refusal("missing_refusal_code", "refusal_code")
            return [
                lm.LspOrderRefused(
                    lsp_order_id=order_id, code=report.refusal_code,
                    message=report.refusal_message, property=report.refusal_property,
                )
            ]  # fmt: skip
        case "no_answer":
            if state.status is not _S.REQUESTED:
                return []
            if ctx.now_ms < state.answer_deadline_ms:
                return Refusal("before_answer_deadline", "stage")
            return [lm.LspOrderFailed(lsp_order_id=order_id, reason="lsp_no_answer")]
        case "paid":
            if state.status is _S.PAID:
                return []
            if state.status is not _S.PAYING or not report.payment_intent_id:
                return Refusal("not_paying", "payment_intent_id")
            return [
                lm.LspOrderPaid(lsp_order_id=order_id, payment_intent_id=report.payment_intent_id)
            ]
        case "unpaid":
            # Our payment failed for good; the LSP will expire the order. Nothing is retried
            # under the same key (the intent is final), so the order ends here.
            if state.status is not _S.PAYING:
                return Refusal("not_paying", "stage")
            return [lm.LspOrderFailed(lsp_order_id=order_id, reason="payment_failed")]
    return _status(state, report)


def _created(state: LspOrder, report: lm.RecordLspOrderReport, ctx: LspOrderContext) -> Decision:
    if state.status is not _S.REQUESTED:
        same = report.remote_order_id == state.remote_order_id
        return [] if same else Refusal("conflicting_order", "remote_order_id")
    fields = (
        report.remote_order_id, report.invoice, report.invoice_amount_msat, report.invoice_payee,
        report.fee_total_msat, report.order_total_msat, report.expires_at_s,
    )  # fmt: skip
    if any(value is None for value in fields):
        return Refusal("incomplete_quote", "stage")
    assert report.remote_order_id and report.invoice  # for the type checker
    assert report.fee_total_msat is not None and report.order_total_msat is not None
    assert report.expires_at_s is not None
    created = lm.LspOrderCreated(
        lsp_order_id=state.lsp_order_id, remote_order_id=report.remote_order_id,
        invoice=report.invoice, fee_total_msat=report.fee_total_msat,
        order_total_msat=report.order_total_msat, expires_at_s=report.expires_at_s,
    )  # fmt: skip
    abandon = _quote_problem(state, report, ctx)
    if abandon is not None:
        reason, detail = abandon
        return [
            created,
            lm.LspOrderAbandoned(lsp_order_id=state.lsp_order_id, reason=reason, detail=detail),
        ]
    pay = lm.LspOrderPaymentRequested(
        lsp_order_id=state.lsp_order_id, payment_key=lm.payment_key_of(state.lsp_order_id),
        invoice=report.invoice, amount_msat=report.order_total_msat,
        max_routing_fee_msat=state.max_routing_fee_msat,
    )  # fmt: skip
    return [created, pay]


def _quote_problem(
    state: LspOrder, report: lm.RecordLspOrderReport, ctx: LspOrderContext
) -> tuple[lm.AbandonReason, str] | None:
    assert report.fee_total_msat is not None and report.order_total_msat is not None
    assert report.expires_at_s is not None
    if report.fee_total_msat > state.max_fee_msat:
        return "fee_over_budget", f"fee {report.fee_total_msat} over {state.max_fee_msat} msat"
    if report.order_total_msat != report.fee_total_msat + state.client_balance_msat:
        return "total_mismatch", "order_total is not fee_total plus client_balance"
    if report.invoice_amount_msat != report.order_total_msat:
        return "invoice_mismatch", "the invoice is not for the order's total"
    if report.invoice_payee != state.lsp_pubkey:
        return "invoice_mismatch", "the invoice pays another node than the LSP"
    if report.expires_at_s * 1000 <= ctx.now_ms:
        return "already_expired", "the order's payment expired before we could pay"
    return None


def _status(state: LspOrder, report: lm.RecordLspOrderReport) -> Decision:
    if state.status is _S.REQUESTED:
        return Refusal("not_created", "stage")
    order_id = state.lsp_order_id
    if report.order_state == "COMPLETED":
        if report.funding_outpoint is None:
            return Refusal("missing_funding_outpoint", "funding_outpoint")
        return [
            lm.LspOrderCompleted(lsp_order_id=order_id, funding_outpoint=report.funding_outpoint)
        ]
    if report.order_state == "FAILED":
        expired = state.status is _S.PAYING and state.payment_intent_id is None
        return [
            lm.LspOrderFailed(
                lsp_order_id=order_id,
                reason="expired_unpaid" if expired else "lsp_failed",
                payment_state=report.payment_state or "",
            )
        ]
    return []  # CREATED: nothing new
