"""Payment intents that name a payee (ADR 0272), in the writer loop.

Before the intent is decided: the payee must be onboarded and not erased, and the invoice (or
keysend destination) must be their wallet's node key; otherwise the submit is refused with a
coded error on ``payee_id`` (or ``payment_request``/``destination``) and nothing is recorded.
The policy the intent is judged by gains the payee rules (``PayeePolicy``). After it: the
first accepted intent naming a payee is recorded on the payee's stream
(``PayeeFirstPayment``), in the same append as the intent's events.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas import commands as cmd
from schemas import errors
from schemas.records import EventMetadata
from schemas.replies import CommandRejected
from services.domain.intent import PaymentIntent
from services.domain.intent.status import IntentStatus
from services.domain.payees import Payee, PayeeStatus, evolve, first_payment
from services.domain.policy import Policy, PolicyEngine
from services.domain.policy.payee_rules import PayeeFacts, PayeePolicy
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, actor, rejected
from services.engine.event_codec import to_new_events


def payee_policy(
    item: QueuedCommand, command: cmd.SubmitPaymentIntent, payee: Payee | None, policy: Policy
) -> Policy | CommandRejected:
    """The policy to judge this intent by, or the refusal of a payee it cannot be for."""
    if payee is None:
        return rejected(errors.NotFound("no such payee", field="payee_id", code="unknown_payee"))
    if payee.status is PayeeStatus.ERASED:
        return rejected(
            errors.CorridorError("the payee was erased", field="payee_id", code="payee_erased")
        )
    destination = item.invoice.payee if item.invoice is not None else command.destination
    if destination != payee.wallet_pubkey:
        field = "payment_request" if command.payment_request is not None else "destination"
        return rejected(
            errors.CorridorError(
                "the invoice is not the payee's wallet's", field=field, code="payee_mismatch"
            )
        )
    facts = PayeeFacts(
        payee_id=payee.payee_id, region=payee.region, jurisdiction=payee.jurisdiction,
        first_payment=payee.first_payment_intent_id is None,
    )  # fmt: skip
    document = policy.document if isinstance(policy, PolicyEngine) else None
    return PayeePolicy(policy, facts, document)


def record_first_payment(
    plan: BatchPlan,
    item: QueuedCommand,
    payee: Payee,
    before: PaymentIntent | None,
    *,
    now_ms: int,
    new_id: Callable[[], str],
) -> None:
    """After the intent was planned: mark the payee's first accepted payment intent."""
    after = plan.states.get(item.stream_id)
    if before is not None or after is None or after.status is IntentStatus.REJECTED:
        return  # a duplicate, a refusal, or nothing decided
    events = first_payment(payee, item.stream_id)
    if not events:
        return
    metadata = EventMetadata(
        correlation_id=item.envelope.correlation_id or item.stream_id,
        causation_id=item.envelope.causation_id or new_id(),
        actor=actor(item.envelope),
        owner=payee.caller.id,
    )
    plan.events += to_new_events(payee.payee_id, payee.version + 1, events, metadata, now_ms)
    plan.payees[payee.payee_id] = evolve(payee, events[0])
