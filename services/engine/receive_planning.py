"""One receive command in the writer loop (ADR 0220): the aggregate's pure ``decide`` and
``evolve``, the work order signed before the append, the events and the reply added to the
batch's plan. The processor only routes receive commands here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from schemas import errors
from schemas.receive_messages import CreateReceiveIntent, ReceiveCommand, RecordInvoiceState
from schemas.replies import CommandAccepted
from services.domain.receive import ReceiveContext, ReceiveIntent, decide, evolve
from services.domain.routing import Router
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, rejected
from services.engine.rejection_budget import RejectionBudget
from services.engine.stream_planning import accepted, add_events, evolved
from services.signing.port import Signer
from services.signing.receive_orders import sign_receive_orders

RECEIVE_COMMANDS: Final = (CreateReceiveIntent, RecordInvoiceState)
# New receives one caller may create a minute, per engine: each is an invoice a node holds
# until it expires. A checkout makes one per customer; ten a second per credential is far
# above a pilot's traffic and still bounds what one credential can make our nodes store.
RECEIVES_PER_CALLER_PER_MINUTE: Final = 600
_THROTTLED: Final = errors.RateLimited(
    "too many new receives from this caller; retry in a minute", field="caller"
)


def receive_accepted(state: ReceiveIntent, *, duplicate: bool) -> CommandAccepted:
    return accepted(state.intent_id, str(state.status), duplicate=duplicate, reason=state.reason)


class ReceivePlanner:
    def __init__(
        self,
        *,
        new_id: Callable[[], str],
        signer: Signer | None,
        per_minute: int = RECEIVES_PER_CALLER_PER_MINUTE,
    ) -> None:
        self._new_id = new_id
        self._budget = RejectionBudget(per_minute)
        # ``None``: orders go unsigned and executors refuse them (tests of the engine alone).
        self._signer = signer

    def plan(
        self,
        plan: BatchPlan,
        item: QueuedCommand,
        command: ReceiveCommand,
        state: ReceiveIntent | None,
        *,
        router: Router,
        now_ms: int,
    ) -> None:
        create = command if isinstance(command, CreateReceiveIntent) else None
        new = create is not None and state is None
        if new and create is not None and not self._budget.allows(create.caller.id, now_ms):
            plan.replies.append(rejected(_THROTTLED))
            return
        ctx = ReceiveContext(
            now_ms=now_ms, router=router, intent_id=item.stream_id,
            request_fingerprint=item.request_fingerprint,
        )  # fmt: skip
        try:
            new_events = decide(state, command, ctx)
        except errors.CorridorError as exc:
            plan.replies.append(rejected(exc))
            return
        if not new_events:
            assert state is not None
            plan.replies.append(receive_accepted(state, duplicate=True))
            return
        if create is not None:
            self._budget.charge(create.caller.id, now_ms)
        first_version = (state.version if state else 0) + 1
        if self._signer is not None:
            new_events = sign_receive_orders(
                self._signer, item.stream_id, first_version, new_events
            )
        new_state = evolved(state, new_events, evolve)
        add_events(
            plan, item, item.stream_id, first_version, new_events, owner=new_state.caller.id,
            new_id=self._new_id, now_ms=now_ms,
        )  # fmt: skip
        plan.receives[item.stream_id] = new_state
        plan.replies.append(receive_accepted(new_state, duplicate=False))
