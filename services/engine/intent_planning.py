"""One payment intent command in the writer loop: the aggregate's pure ``decide`` and
``evolve``, around them what needs the engine (the caller's rejection budget, the agent key as
the log has it now, the key's own limits, signing work orders), and the events, claim and reply
it adds to the batch's plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas import commands as cmd
from schemas import errors
from schemas.events import IntentRejected
from schemas.records import EventMetadata
from services import tracing
from services.domain.agent_keys.limits import check_key_limits
from services.domain.intent import DecisionContext, PaymentIntent, decide, evolve
from services.domain.policy import Policy
from services.domain.routing import Router
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, actor, rejected
from services.engine.event_codec import to_new_events
from services.engine.rejection_budget import RejectionBudget
from services.engine.spend_book import SpendBook
from services.engine.spend_sync import SPEND_EVENT_TYPES
from services.engine.views import accepted
from services.eventstore.port import IdempotencyClaim
from services.identity.agent_keys import AgentKey, AgentKeyLookup
from services.signing.orders import sign_orders
from services.signing.port import Signer

_THROTTLED = errors.RateLimited(
    "too many of this caller's submits were rejected by policy lately; retry in a minute",
    field="caller",
)


@dataclass(frozen=True, slots=True)
class IntentRules:
    """What every intent decision is given besides the policy and the router."""

    network: str
    attempts_max: int
    pay_timeout_s: int


class IntentPlanner:
    def __init__(
        self,
        rules: IntentRules,
        spend: SpendBook,
        *,
        new_id: Callable[[], str],
        signer: Signer | None,
        rejections: RejectionBudget,
    ) -> None:
        self._rules = rules
        self._spend = spend
        self._new_id = new_id
        # Signs every work order before it is appended (ADR 0063); ``None``: orders go unsigned
        # and executors refuse them (tests of the engine alone).
        self._signer = signer
        # Bounds what policy-rejected submits, three events each, cost per caller (ADR 0079).
        self._rejections = rejections

    def plan(
        self,
        plan: BatchPlan,
        item: QueuedCommand,
        command: cmd.Command,
        state: PaymentIntent | None,
        *,
        policy: Policy,
        router: Router,
        keys: AgentKeyLookup,
        now_ms: int,
    ) -> None:
        if item.envelope.traceparent is None:  # untraced: no span, no context manager
            self._plan(
                plan, item, command, state, policy=policy, router=router, keys=keys,
                now_ms=now_ms, traceparent=None,
            )  # fmt: skip
            return
        # A traced command is decided in a child span of its sender's (ADR 0154).
        attributes = {
            "corridor.command": type(command).__name__,
            "corridor.intent_id": item.stream_id,
        }
        with tracing.child_span(
            "corridor.engine.decide", item.envelope.traceparent, attributes
        ) as traceparent:
            self._plan(
                plan, item, command, state, policy=policy, router=router, keys=keys,
                now_ms=now_ms, traceparent=traceparent,
            )  # fmt: skip

    def _plan(
        self,
        plan: BatchPlan,
        item: QueuedCommand,
        command: cmd.Command,
        state: PaymentIntent | None,
        *,
        policy: Policy,
        router: Router,
        keys: AgentKeyLookup,
        now_ms: int,
        traceparent: str | None,
    ) -> None:
        submit = command if isinstance(command, cmd.SubmitPaymentIntent) else None
        if submit and state is None and not self._rejections.allows(submit.caller.id, now_ms):
            plan.replies.append(rejected(_THROTTLED))
            return
        try:
            key = _agent_key(keys, item) if state is None else None
        except errors.CorridorError as exc:
            plan.replies.append(rejected(exc))
            return
        ctx = DecisionContext(
            now_ms=now_ms,
            policy=policy,
            router=router,
            network=self._rules.network,
            intent_id=item.stream_id,
            request_fingerprint=item.request_fingerprint,
            invoice=item.invoice,
            attempts_max=self._rules.attempts_max,
            pay_timeout_s=self._rules.pay_timeout_s,
            agent_key_id=key.key_id if key else None,
            on_behalf_of=key.sponsor_id if key else None,
        )
        try:
            if key is not None and isinstance(command, cmd.SubmitPaymentIntent):
                check_key_limits(
                    key.key_id, key.limits, amount_msat=command.amount_msat,
                    budget_msat=command.amount_msat + command.max_fee_msat,
                    spend=self._spend.key_tracker, now_ms=now_ms,
                )  # fmt: skip
            new_events = decide(state, command, ctx)
        except errors.CorridorError as exc:
            plan.replies.append(rejected(exc))
            return
        if not new_events:
            assert state is not None
            plan.replies.append(accepted(state, duplicate=True))
            return
        if submit and any(isinstance(e, IntentRejected) and e.by == "policy" for e in new_events):
            self._rejections.charge(submit.caller.id, now_ms)
        if self._signer is not None:
            # Signed here, after the pure decide and before the append: the key never
            # reaches the domain, and what is logged is what the executors verify.
            new_events = sign_orders(
                self._signer, item.stream_id, (state.version if state else 0) + 1, new_events
            )
        new_state = state
        for event in new_events:
            new_state = evolve(new_state, event)
        assert new_state is not None
        # Applied now, so the next command in this batch sees this one's reservation.
        self._spend.tracker.apply(item.stream_id, new_events, at_ms=now_ms)
        self._spend.key_tracker.apply(item.stream_id, new_events, at_ms=now_ms)
        if any(type(e).__name__ in SPEND_EVENT_TYPES for e in new_events):
            plan.spend_callers.add(new_state.caller.id)
            plan.judged_submits |= isinstance(command, cmd.SubmitPaymentIntent)
        metadata = EventMetadata(
            correlation_id=item.envelope.correlation_id or item.stream_id,
            causation_id=item.envelope.causation_id or self._new_id(),
            actor=actor(item.envelope),
            policy_version=new_state.policy_version,
            owner=new_state.caller.id,  # the relay's subject token (ADR 0067)
            traceparent=traceparent,
        )
        plan.events += to_new_events(
            item.stream_id, (state.version if state else 0) + 1, new_events, metadata, now_ms
        )
        if isinstance(command, cmd.SubmitPaymentIntent):
            assert item.request_fingerprint is not None
            plan.claims.append(
                IdempotencyClaim(
                    caller_id=command.caller.id,
                    idempotency_key=command.idempotency_key,
                    intent_id=item.stream_id,
                    fingerprint=item.request_fingerprint,
                )
            )
        plan.states[item.stream_id] = new_state
        plan.replies.append(accepted(new_state, duplicate=False))


def _agent_key(keys: AgentKeyLookup, item: QueuedCommand) -> AgentKey | None:
    """The current state of the key that signed a new agent submit (``None`` for others):
    revoked since the intake checked it, the command is refused all the same."""
    signed = item.envelope.agent_key
    if signed is None:
        return None
    key = keys.find(signed.key_id)
    if key is None or key.revoked:
        raise errors.KeyRevoked(
            f"key {signed.key_id} of agent {signed.agent_id} is revoked",
            field="Corridor-Agent-Key-Id",
        )
    return key
