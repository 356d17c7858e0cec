"""``evolve``: apply one event to the state. Pure, total over the transition table."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas import events as ev
from services.domain.intent.state import IntentStatus, PaymentIntent
from services.domain.intent.transitions import next_status


class TransitionRefused(AssertionError):
    """An event that the transition table does not allow reached ``evolve``: a programmer error
    (decide emitted it) or a corrupted log. Never a user error."""


def evolve(state: PaymentIntent | None, event: ev.EventData) -> PaymentIntent:
    event_type = type(event).__name__
    target = next_status(state.status if state else None, event_type)
    if target is None:
        raise TransitionRefused(
            f"{event_type} not allowed in state {state.status if state else 'none'}"
        )
    if isinstance(event, ev.IntentReceived):
        assert state is None
        return PaymentIntent(
            intent_id=event.intent_id,
            status=target,
            version=1,
            caller=event.caller,
            idempotency_key=event.idempotency_key,
            request_fingerprint=event.request_fingerprint,
            corridor=event.corridor,
            amount_msat=event.amount_msat,
            max_fee_msat=event.max_fee_msat,
            payment_request=event.payment_request,
            destination=event.destination,
            payment_hash=event.invoice.payment_hash if event.invoice else None,
            invoice_has_amount=(event.invoice.amount_msat is not None) if event.invoice else None,
            received_at_ms=event.received_at_ms,
            deadline_at_ms=event.deadline_at_ms,
        )
    assert state is not None
    changes = _changes(state, event)
    return msgspec.structs.replace(state, status=target, version=state.version + 1, **changes)


def _changes(state: PaymentIntent, event: ev.EventData) -> dict[str, object]:
    match event:
        case ev.IntentPolicyChecked(tier=tier, policy_version=policy_version):
            return {"tier": tier, "policy_version": policy_version,
                    "explanation": event.explanation}  # fmt: skip
        case ev.IntentApprovalRequested(approval_deadline_at_ms=deadline):
            return {"approval_deadline_at_ms": deadline}
        case ev.IntentApproved():
            return {"explanation": ()}
        case ev.IntentRouted(attempt=attempt, region=region, node=node):
            assert attempt == state.attempt + 1, "attempts are contiguous"
            assert (region, node) not in state.tried_nodes, "a node that proved it did not pay"
            return {
                "attempt": attempt,
                "region": region,
                "node": node,
                "tried_nodes": (*state.tried_nodes, (region, node)),
                "in_doubt": False,
                "explanation": (),
            }
        case ev.IntentDispatched(attempt=attempt, payment_hash=payment_hash):
            assert attempt == state.attempt
            return {"payment_hash": payment_hash or state.payment_hash}
        case ev.PaymentInFlightReported(payment_hash=payment_hash):
            return {"payment_hash": state.payment_hash or payment_hash}
        case ev.PaymentInDoubt():
            return {"in_doubt": True}
        case ev.PaymentSucceeded(preimage=preimage, fee_msat=fee_msat):
            assert state.preimage is None, "at most one successful payment per intent"
            return {
                "preimage": preimage,
                "fee_msat": fee_msat,
                "in_doubt": False,
                # A keysend hash is known from the node's report only.
                "payment_hash": state.payment_hash or event.payment_hash,
            }
        case ev.IntentSettled(preimage=preimage):
            # The proven preimage: the one a success without proof reported is replaced.
            return {"preimage": preimage}
        case ev.IntentEscalated(attempt=attempt):
            return {"escalated_attempt": attempt}
        case ev.PaymentAttemptFailed(attempt=attempt, reason=reason):
            assert state.region is not None and state.node is not None
            failure = ev.NodeFailure(
                region=state.region, node=state.node, reason=reason, attempt=attempt
            )
            return {"failure_reason": reason, "failures": (*state.failures, failure)}
        case ev.IntentFailed(reason=reason, failures=failures):
            # The event's list is the whole story (tried and refused nodes); an event logged
            # before the list existed keeps the attempts folded so far.
            return {
                "failure_reason": reason,
                "failures": failures or state.failures,
                "explanation": (),
            }
        case ev.IntentRejected(reason=reason):
            return {"failure_reason": reason}
        case ev.OutcomeIgnored(anomaly=anomaly):
            return {
                "ignored_outcomes": state.ignored_outcomes + 1,
                "anomalies": state.anomalies + (1 if anomaly else 0),
            }
        case ev.AnomalyAcknowledged():
            return {"anomalies_acknowledged": state.anomalies}
        case _:
            return {}


def fold(events: Iterable[ev.EventData]) -> PaymentIntent | None:
    state: PaymentIntent | None = None
    for event in events:
        state = evolve(state, event)
    return state


__all__ = ["IntentStatus", "TransitionRefused", "evolve", "fold"]
