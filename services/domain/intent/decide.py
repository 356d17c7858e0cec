"""``decide``: turn one command into the events it causes, or refuse it with a coded error.

Pure: time, ids, policy and routing arrive in ``DecisionContext``. A refusal that a caller can
legitimately cause raises a ``CorridorError``; an outcome that arrives late or twice is not
refused but recorded as ``OutcomeIgnored`` so that audits see it.
"""

from __future__ import annotations

import hashlib

from schemas import commands as cmd
from schemas import errors, limits
from schemas import events as ev
from services.domain.intent.context import DecisionContext
from services.domain.intent.evolve import evolve
from services.domain.intent.state import IntentStatus, PaymentIntent, effective_deadline
from services.domain.intent.transitions import (
    AWAITING_EVIDENCE_STATUSES,
    ON_THE_WIRE_STATUSES,
    PRE_DISPATCH_STATUSES,
)
from services.domain.routing import RouteDecision

# Reasons after which another region may succeed where this one failed.
RETRYABLE_REASONS = frozenset({"node_unavailable", "insufficient_liquidity", "no_route", "timeout"})


def decide(
    state: PaymentIntent | None, command: cmd.Command, ctx: DecisionContext
) -> list[ev.EventData]:
    match command:
        case cmd.SubmitPaymentIntent():
            return _submit(state, command, ctx)
        case _ if state is None:
            raise errors.NotFound(f"no payment intent {command.intent_id}", field="intent_id")
        case cmd.CancelPaymentIntent():
            return _cancel(state, command)
        case cmd.ApprovePaymentIntent():
            return _approve(state, command, ctx)
        case cmd.RejectPaymentIntent():
            return _reject(state, command)
        case cmd.ExpirePaymentIntent():
            return _expire(state, ctx)
        case cmd.RecordPaymentOutcome():
            return _record_outcome(state, command, ctx)
        case cmd.ResolvePaymentIntent():
            return _resolve(state, command)
        case cmd.EscalatePaymentIntent():
            return _escalate(state, command, ctx)
        case cmd.AcknowledgeAnomaly():
            return _acknowledge(state, command)
    raise AssertionError(f"unhandled command {type(command).__name__}")


def _submit(
    state: PaymentIntent | None, command: cmd.SubmitPaymentIntent, ctx: DecisionContext
) -> list[ev.EventData]:
    assert ctx.intent_id is not None and ctx.request_fingerprint is not None
    if state is not None:
        # The service layer answers duplicates before deciding; this guards a race.
        if state.request_fingerprint != ctx.request_fingerprint:
            raise errors.IdempotencyMismatch(
                "idempotency_key was already used with a different request",
                field="idempotency_key",
            )
        return []
    _check_payee(command, ctx)
    received = ev.IntentReceived(
        intent_id=ctx.intent_id,
        caller=command.caller,
        idempotency_key=command.idempotency_key,
        corridor=command.corridor,
        amount_msat=command.amount_msat,
        max_fee_msat=command.max_fee_msat,
        payment_request=command.payment_request,
        destination=command.destination,
        invoice=ctx.invoice,
        deadline_at_ms=(
            ctx.now_ms + command.deadline_s * 1000 if command.deadline_s is not None else None
        ),
        metadata=command.metadata,
        received_at_ms=ctx.now_ms,
        request_fingerprint=ctx.request_fingerprint,
        agent_key_id=ctx.agent_key_id,
        on_behalf_of=ctx.on_behalf_of,
        payee_id=command.payee_id,
    )
    verdict = ctx.policy.judge(
        command, now_ms=ctx.now_ms, payee=ctx.invoice.payee if ctx.invoice else None
    )
    events: list[ev.EventData] = [
        received,
        ev.IntentPolicyChecked(
            tier=verdict.tier,
            policy_version=verdict.policy_version,
            explanation=verdict.explanation,
        ),
    ]
    if verdict.reject_reason is not None:
        events.append(ev.IntentRejected(by="policy", reason=verdict.reject_reason))
        return events
    if verdict.tier == "approval":
        deadline = (
            ctx.now_ms + verdict.approval_window_ms
            if verdict.approval_window_ms is not None
            else None
        )
        events.append(ev.IntentApprovalRequested(approval_deadline_at_ms=deadline))
        return events
    state = _fold_new(events)
    return events + _route_and_dispatch(state, ctx)


def _check_payee(command: cmd.SubmitPaymentIntent, ctx: DecisionContext) -> None:
    if (command.payment_request is None) == (command.destination is None):
        raise errors.SchemaViolation(
            "exactly one of payment_request or destination is required", field="payment_request"
        )
    if command.payment_request is None:
        return
    invoice = ctx.invoice
    assert invoice is not None, "the intake decodes every payment_request"
    if invoice.network != ctx.network:
        raise errors.InvalidInvoice(
            f"invoice is for {invoice.network}, this Corridor pays on {ctx.network}",
            field="payment_request",
            code="wrong_network",
        )
    if invoice.amount_msat is not None and invoice.amount_msat != command.amount_msat:
        raise errors.InvalidInvoice(
            f"invoice amount {invoice.amount_msat} msat differs from amount_msat "
            f"{command.amount_msat}",
            field="amount_msat",
            code="invoice_amount_mismatch",
        )
    if invoice.created_at_s > ctx.now_ms // 1000 + limits.INVOICE_CLOCK_SKEW_S_MAX:
        raise errors.InvalidInvoice(
            f"invoice is dated {invoice.created_at_s} s, more than "
            f"{limits.INVOICE_CLOCK_SKEW_S_MAX} s ahead of this engine's clock",
            field="payment_request.timestamp",
            code="invoice_from_future",
        )
    if invoice.expires_at_s - invoice.created_at_s > limits.INVOICE_EXPIRY_S_MAX:
        raise errors.InvalidInvoice(
            f"invoice expiry {invoice.expires_at_s - invoice.created_at_s} s exceeds "
            f"{limits.INVOICE_EXPIRY_S_MAX} s",
            field="payment_request.expiry",
            code="invoice_expiry_too_long",
        )
    if invoice.expires_at_s * 1000 <= ctx.now_ms:
        raise errors.InvalidInvoice(
            "invoice has expired", field="payment_request", code="invoice_expired"
        )


def _fold_new(events: list[ev.EventData]) -> PaymentIntent:
    state: PaymentIntent | None = None
    for event in events:
        state = evolve(state, event)
    assert state is not None
    return state


def _route_and_dispatch(state: PaymentIntent, ctx: DecisionContext) -> list[ev.EventData]:
    """Route the next attempt, or fail the intent when no candidate or no budget is left.

    Only the nodes already tried are excluded: each of them proved it did not pay, which says
    nothing about another node in the same region (ADR 0014).
    """
    if state.attempt >= ctx.attempts_max:
        return [_intent_failed(state, "retry_budget_exhausted")]
    choice = ctx.router.choose(
        state.corridor,
        amount_msat=state.amount_msat,
        exclude_nodes=frozenset(state.tried_nodes),
        keysend=state.destination is not None,
    )
    if not isinstance(choice, RouteDecision):
        reason = "no_route_candidate" if choice else "unknown_corridor"
        return [_intent_failed(state, reason, refused=choice)]
    attempt = state.attempt + 1
    return [
        ev.IntentRouted(
            attempt=attempt,
            region=choice.region,
            node=choice.node,
            reason=choice.reason,
            rejected=choice.rejected,
        ),
        ev.IntentDispatched(
            attempt=attempt,
            region=choice.region,
            node=choice.node,
            amount_msat=state.amount_msat,
            max_fee_msat=state.max_fee_msat,
            payment_request=state.payment_request,
            destination=state.destination,
            payment_hash=state.payment_hash,
            pay_timeout_s=ctx.pay_timeout_s,
            invoice_has_amount=state.invoice_has_amount,
        ),
    ]


def _cancel(state: PaymentIntent, command: cmd.CancelPaymentIntent) -> list[ev.EventData]:
    if command.caller.id != state.caller.id:
        raise errors.Forbidden("only the submitting caller may cancel", field="caller.id")
    if state.status is IntentStatus.CANCELLED:
        return []  # cancelling twice is a no-op, not an error
    if state.status not in PRE_DISPATCH_STATUSES:
        raise errors.InvalidTransition(
            f"cannot cancel in state {state.status}: "
            + (
                "the payment may already be on the network"
                if state.status in ON_THE_WIRE_STATUSES
                else "the intent is final"
            ),
            field="intent_id",
        )
    return [ev.IntentCancelled(by=command.caller.id, reason=command.reason)]


def _approve(
    state: PaymentIntent, command: cmd.ApprovePaymentIntent, ctx: DecisionContext
) -> list[ev.EventData]:
    if state.status is not IntentStatus.AWAITING_APPROVAL:
        raise errors.InvalidTransition(f"cannot approve in state {state.status}", field="intent_id")
    if command.operator_id == state.caller.id:
        # The approval tier exists because the caller alone may not spend this much; the same
        # id approving is the caller alone, whatever role its credential claims (ADR 0061).
        raise errors.TwoPersonRule("an intent's caller cannot approve it", field="operator_id")
    if _approval_lapsed(state, ctx):
        return [ev.IntentExpired(deadline_at_ms=effective_deadline(state))]
    approved: list[ev.EventData] = [
        ev.IntentApproved(operator_id=command.operator_id, note=command.note)
    ]
    return approved + _route_and_dispatch(evolve(state, approved[0]), ctx)


def _reject(state: PaymentIntent, command: cmd.RejectPaymentIntent) -> list[ev.EventData]:
    if state.status is not IntentStatus.AWAITING_APPROVAL:
        raise errors.InvalidTransition(f"cannot reject in state {state.status}", field="intent_id")
    return [
        ev.IntentRejected(by="operator", reason=command.reason, operator_id=command.operator_id)
    ]


def _approval_lapsed(state: PaymentIntent, ctx: DecisionContext) -> bool:
    deadline = effective_deadline(state)
    return deadline is not None and ctx.now_ms >= deadline


def _expire(state: PaymentIntent, ctx: DecisionContext) -> list[ev.EventData]:
    if state.status not in PRE_DISPATCH_STATUSES:
        return []  # final, or on the wire where only the node's evidence may end it
    if not _approval_lapsed(state, ctx):
        raise errors.InvalidTransition("the intent's deadline has not passed", field="intent_id")
    return [ev.IntentExpired(deadline_at_ms=effective_deadline(state))]


def _record_outcome(
    state: PaymentIntent, command: cmd.RecordPaymentOutcome, ctx: DecisionContext
) -> list[ev.EventData]:
    stale_reason = _stale_reason(state, command)
    if stale_reason is not None:
        return [_ignored(state, command, stale_reason)]
    match command.outcome:
        case "in_flight":
            if state.status is IntentStatus.IN_FLIGHT:
                return [_ignored(state, command, "duplicate")]
            return [
                ev.PaymentInFlightReported(
                    attempt=command.attempt, payment_hash=command.payment_hash
                )
            ]
        case "succeeded":
            return _succeeded(state, command)
        case "failed":
            return _failed(state, command, ctx)
    raise AssertionError(command.outcome)


def _stale_reason(state: PaymentIntent, command: cmd.RecordPaymentOutcome) -> str | None:
    if command.attempt != state.attempt:
        return "stale_attempt"
    if (command.region, command.node) != (state.region, state.node):
        # Only the node the attempt went to can know its outcome; executors rely on that
        # when they send an order no worker has seen without asking first (ADR 0203).
        return "wrong_node"
    if state.status not in ON_THE_WIRE_STATUSES:
        if _proves_unproven_success(state, command):
            return None  # the node re-queried: the way out of a success without proof
        return "duplicate" if _same_as_recorded(state, command) else f"state_{state.status}"
    return None


def _proves(preimage: str | None, payment_hash: str | None) -> bool:
    return (
        preimage is not None
        and payment_hash is not None
        and hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == payment_hash
    )


def _proves_unproven_success(state: PaymentIntent, command: cmd.RecordPaymentOutcome) -> bool:
    return (
        state.status is IntentStatus.SUCCEEDED
        and command.outcome == "succeeded"
        and not _proves(state.preimage, state.payment_hash)
        # A keysend hash is known from the node's reports only, as in ``_succeeded``.
        and _proves(command.preimage, state.payment_hash or command.payment_hash)
    )


def _same_as_recorded(state: PaymentIntent, command: cmd.RecordPaymentOutcome) -> bool:
    if command.outcome == "succeeded":
        return state.preimage is not None and state.preimage == command.preimage
    return command.outcome == "failed" and state.status is IntentStatus.FAILED


def _ignored(
    state: PaymentIntent, command: cmd.RecordPaymentOutcome, reason: str
) -> ev.OutcomeIgnored:
    # A success we did not expect means money may have moved: flag it for the exception queue.
    anomaly = command.outcome == "succeeded" and reason != "duplicate"
    return ev.OutcomeIgnored(
        attempt=command.attempt,
        outcome=command.outcome,
        state=str(state.status),
        reason=reason,
        anomaly=anomaly,
        preimage=command.preimage if anomaly else None,
    )


def _succeeded(state: PaymentIntent, command: cmd.RecordPaymentOutcome) -> list[ev.EventData]:
    if command.preimage is None:
        raise errors.MissingField("a succeeded outcome needs the preimage", field="preimage")
    fee_msat = command.fee_msat or 0
    if state.status is IntentStatus.SUCCEEDED:
        # Proven now (``_stale_reason`` let only a proving preimage through): settle.
        return [_settled(state, command.preimage, command.fee_msat or state.fee_msat or 0)]
    succeeded = ev.PaymentSucceeded(
        attempt=command.attempt,
        payment_hash=command.payment_hash or state.payment_hash,
        preimage=command.preimage,
        fee_msat=fee_msat,
    )
    expected_hash = state.payment_hash or command.payment_hash
    proven = (
        expected_hash is not None
        and hashlib.sha256(bytes.fromhex(command.preimage)).hexdigest() == expected_hash
    )
    if not proven:
        # Without a preimage that hashes to the payment hash there is no proof of payment:
        # the intent stays in ``succeeded`` for an operator to look at.
        return [succeeded]
    return [succeeded, _settled(state, command.preimage, fee_msat)]


def _settled(state: PaymentIntent, preimage: str, fee_msat: int) -> ev.IntentSettled:
    return ev.IntentSettled(
        amount_msat=state.amount_msat,
        fee_msat=fee_msat,
        total_msat=state.amount_msat + fee_msat,
        preimage=preimage,
        fee_ppm=ev.fee_ppm_of(fee_msat, state.amount_msat),
    )


def _escalate(
    state: PaymentIntent, command: cmd.EscalatePaymentIntent, ctx: DecisionContext
) -> list[ev.EventData]:
    """An exception item for an intent that outlived its bound without the node's evidence.
    Once per attempt; nothing else changes (spend stays reserved: a timeout is no proof)."""
    if state.status not in AWAITING_EVIDENCE_STATUSES or state.escalated_attempt == state.attempt:
        return []  # resolved meanwhile, or already escalated
    if ctx.now_ms < command.on_wire_since_ms + command.life_s * 1000:
        raise errors.InvalidTransition("the intent has not outlived its bound", field="intent_id")
    succeeded = state.status is IntentStatus.SUCCEEDED
    return [
        ev.IntentEscalated(
            reason="unproven_success" if succeeded else "life_exceeded",
            attempt=state.attempt,
            state=str(state.status),
            region=state.region,
            node=state.node,
            on_wire_since_ms=command.on_wire_since_ms,
            life_s=command.life_s,
            in_doubt=state.in_doubt,
            payment_hash=state.payment_hash,
            failures=state.failures,
            ignored_outcomes=state.ignored_outcomes,
            anomalies=state.anomalies,
        )
    ]


def _resolve(state: PaymentIntent, command: cmd.ResolvePaymentIntent) -> list[ev.EventData]:
    """An operator's decision, with evidence, for an intent its node never proved either way.
    ``settled`` only with the preimage that proves it; ``not_paid`` releases the spend on the
    operator's recorded word, never on a timeout."""
    if state.status not in AWAITING_EVIDENCE_STATUSES:
        raise errors.InvalidTransition(
            f"cannot resolve in state {state.status}: only an intent awaiting the node's "
            "evidence (dispatched, in_flight, or succeeded without proof)",
            field="intent_id",
        )
    if command.operator_id == state.caller.id:
        # Releasing or settling the caller's own spend on its own word is the caller alone.
        raise errors.TwoPersonRule("an intent's caller cannot resolve it", field="operator_id")
    resolved = ev.IntentResolved(
        operator_id=command.operator_id,
        resolution=command.resolution,
        evidence=command.evidence,
        attempt=state.attempt,
        preimage=command.preimage,
    )
    if command.resolution == "not_paid":
        return [resolved, _intent_failed(state, "resolved_not_paid")]
    if command.preimage is None:
        raise errors.MissingField("settling needs the payment's preimage", field="preimage")
    if state.payment_hash is None:
        raise errors.InvalidTransition(
            "no payment hash is known for this attempt: a preimage cannot be checked",
            field="preimage", code="payment_hash_unknown",
        )  # fmt: skip
    if not _proves(command.preimage, state.payment_hash):
        raise errors.InvalidTransition(
            "the preimage does not hash to the payment hash",
            field="preimage", code="preimage_mismatch",
        )  # fmt: skip
    if state.status is IntentStatus.SUCCEEDED:
        fee_msat = command.fee_msat or state.fee_msat or 0
        return [resolved, _settled(state, command.preimage, fee_msat)]
    fee_msat = command.fee_msat or 0
    succeeded = ev.PaymentSucceeded(
        attempt=state.attempt,
        payment_hash=state.payment_hash,
        preimage=command.preimage,
        fee_msat=fee_msat,
    )
    return [resolved, succeeded, _settled(state, command.preimage, fee_msat)]


def _acknowledge(state: PaymentIntent, command: cmd.AcknowledgeAnomaly) -> list[ev.EventData]:
    """An operator's word on the intent's open anomalies; the status stays as it is. Nothing
    open is refused (``nothing_to_acknowledge``): an acknowledgement always covers something."""
    if state.anomalies <= state.anomalies_acknowledged:
        raise errors.InvalidTransition(
            "the intent has no anomaly waiting for an operator",
            field="intent_id", code="nothing_to_acknowledge",
        )  # fmt: skip
    if command.operator_id == state.caller.id:
        # Money may have moved against the caller's own intent: not the caller's call alone.
        raise errors.TwoPersonRule(
            "an intent's caller cannot acknowledge its anomalies", field="operator_id"
        )
    return [
        ev.AnomalyAcknowledged(
            operator_id=command.operator_id,
            reason=command.reason,
            evidence=command.evidence,
            anomalies=state.anomalies,
        )
    ]


def _failed(
    state: PaymentIntent, command: cmd.RecordPaymentOutcome, ctx: DecisionContext
) -> list[ev.EventData]:
    reason = command.failure_reason or "unknown"
    if not command.confirmed_not_paid:
        if state.in_doubt:
            return [_ignored(state, command, "duplicate")]
        return [ev.PaymentInDoubt(attempt=command.attempt, reason=reason, detail=command.detail)]
    failed = ev.PaymentAttemptFailed(
        attempt=command.attempt, reason=reason, confirmed_not_paid=True, detail=command.detail
    )
    after = evolve(state, failed)
    if reason not in RETRYABLE_REASONS:
        return [failed, _intent_failed(after, reason)]
    return [failed, *_route_and_dispatch(after, ctx)]


def _intent_failed(
    state: PaymentIntent, reason: str, *, refused: tuple[ev.RejectedCandidate, ...] = ()
) -> ev.IntentFailed:
    """``IntentFailed`` naming every node tried and, when routing found no candidate, every
    candidate it refused, in the corridor's order (``refused`` is in that order)."""
    tried: dict[tuple[str, str], ev.NodeFailure | None] = {
        (f.region, f.node): f for f in state.failures
    }
    in_corridor = [
        tried.pop((c.region, c.node), None)
        or ev.NodeFailure(region=c.region, node=c.node, reason=c.reason)
        for c in refused
    ]
    # Nodes tried but no longer in the corridor (the table changed) come first, as tried.
    failures = (*(f for f in tried.values() if f is not None), *in_corridor)
    return ev.IntentFailed(reason=reason, attempts=state.attempt, failures=failures)
