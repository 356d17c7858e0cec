"""Payees in the engine (ADR 0270): the writer loop's committed state of ``payee-`` streams
and the planner that decides a command against it. The processor only routes
``OnboardPayee`` and ``ErasePayee`` here.

Operators onboard and erase; the operator's id comes from the credential (the subject's
token), never from the payload, and is the payee's recorded ``caller``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from schemas import errors
from schemas import payee_messages as pm
from schemas.commands import SubmitPaymentIntent
from schemas.common import Caller
from schemas.records import EventMetadata
from schemas.replies import CommandAccepted
from services.domain.payees import Payee, PayeeContext, Refusal, decide, evolve, replay
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, actor, rejected
from services.engine.event_codec import to_new_events
from services.engine.stream_state_cache import StreamStateCache
from services.eventstore.port import EventStore

PAYEE_COMMANDS: Final = pm.PAYEE_COMMAND_TYPES


def named_payees(items: Sequence[QueuedCommand]) -> list[str]:
    """The payees the batch's submits name (ADR 0272): their streams are read with it."""
    return [
        i.envelope.command.payee_id
        for i in items
        if i.error is None
        and isinstance(i.envelope.command, SubmitPaymentIntent)
        and i.envelope.command.payee_id
    ]


class PayeeCache(StreamStateCache[Payee]):
    """Committed payees."""

    def __init__(self, store: EventStore, *, cache_max: int) -> None:
        super().__init__(store, cache_max=cache_max, fold=replay)


def payee_accepted(state: Payee, *, duplicate: bool) -> CommandAccepted:
    return CommandAccepted(intent_id=state.payee_id, state=str(state.status), duplicate=duplicate)


class PayeePlanner:
    def __init__(self, *, new_id: Callable[[], str]) -> None:
        self._new_id = new_id

    def plan(
        self,
        plan: BatchPlan,
        item: QueuedCommand,
        command: pm.PayeeCommand,
        state: Payee | None,
        *,
        now_ms: int,
    ) -> None:
        principal = item.envelope.principal
        if principal is not None and principal.role not in ("operator", "engine"):
            plan.replies.append(rejected(errors.Forbidden("operators onboard and erase payees")))
            return
        caller = Caller(id=principal.id if principal else "corridor", kind="human")
        ctx = PayeeContext(
            payee_id=item.stream_id, request_fingerprint=item.request_fingerprint or "",
            caller=caller,
        )  # fmt: skip
        decision = decide(state, command, ctx)
        if isinstance(decision, Refusal):
            error = errors.CorridorError(
                f"payee command refused: {decision.code}", field=decision.field,
                code=decision.code,
            )  # fmt: skip
            plan.replies.append(rejected(error))
            return
        if not decision:
            assert state is not None
            plan.replies.append(payee_accepted(state, duplicate=True))
            return
        first_version = (state.version if state else 0) + 1
        new_state = state
        for event in decision:
            new_state = evolve(new_state, event)
        assert new_state is not None
        metadata = EventMetadata(
            correlation_id=item.envelope.correlation_id or item.stream_id,
            causation_id=item.envelope.causation_id or self._new_id(),
            actor=actor(item.envelope),
            owner=new_state.caller.id,  # the relay's subject token (ADR 0067)
        )
        plan.events += to_new_events(item.stream_id, first_version, decision, metadata, now_ms)
        plan.payees[item.stream_id] = new_state
        plan.replies.append(payee_accepted(new_state, duplicate=False))
