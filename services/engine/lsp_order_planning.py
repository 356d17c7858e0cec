"""LSP orders in the engine (ADR 0252): the writer loop's committed state of ``lsp-`` streams
and the planner that decides ``OrderLspChannel`` and ``RecordLspOrderReport`` against it with
the aggregate of ADR 0251, unchanged. The processor only routes those two commands here.

Who may do what comes from the credential (the subject's token), never from the payload: an
operator or a service caller orders (and is the order's caller, whose intent pays the LSP);
an executor reports only for the node the order names. ``LspOrderRequested`` is signed: it
is the work order the relay puts on that node's dispatch subject.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from schemas import errors
from schemas import lsp_messages as lm
from schemas.common import Caller
from services.domain.lsp_orders import (
    LspOrder,
    LspOrderContext,
    LspOrderPolicy,
    Refusal,
    decide,
    evolve,
    replay,
)
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, rejected
from services.engine.stream_planning import accepted, add_events
from services.engine.stream_state_cache import StreamStateCache
from services.eventstore.port import EventStore
from services.signing.lsp_orders import sign_lsp_orders
from services.signing.port import Signer

LSP_ORDER_COMMANDS: Final = lm.LSP_ORDER_COMMAND_TYPES
# The most one order may buy: lnd's largest channel without wumbo (2^24 - 1 sat).
LSP_BALANCE_MSAT_MAX: Final = (2**24 - 1) * 1000
# bLIP-50: "a timeout on the scale of minutes" for a response; create_order is not
# idempotent, so a timed-out one is never sent again: the order fails unpaid after this.
ANSWER_WINDOW_MS: Final = 120_000
ENGINE_LSP_POLICY: Final = LspOrderPolicy(
    lsp_balance_msat_max=LSP_BALANCE_MSAT_MAX, answer_window_ms=ANSWER_WINDOW_MS
)


def is_lsp_order_item(item: QueuedCommand) -> bool:
    return isinstance(item.envelope.command, LSP_ORDER_COMMANDS)


class LspOrderCache(StreamStateCache[LspOrder]):
    """Committed LSP orders, read for each batch that names them."""

    def __init__(self, store: EventStore, *, cache_max: int) -> None:
        super().__init__(store, cache_max=cache_max, fold=replay)

    async def load_for(self, items: Sequence[QueuedCommand]) -> None:
        await self.load([i.stream_id for i in items if i.error is None and is_lsp_order_item(i)])


class LspOrderPlanner:
    def __init__(
        self,
        cache: LspOrderCache,
        *,
        new_id: Callable[[], str],
        signer: Signer | None,
        policy: LspOrderPolicy = ENGINE_LSP_POLICY,
    ) -> None:
        self._cache = cache
        self._new_id = new_id
        # ``None``: orders go unsigned and executors refuse them (tests of the engine alone).
        self._signer = signer
        self._policy = policy

    def plan(self, plan: BatchPlan, item: QueuedCommand, *, now_ms: int) -> None:
        command = item.envelope.command
        assert isinstance(command, LSP_ORDER_COMMANDS)
        principal = item.envelope.principal
        state = plan.lsp_orders.get(item.stream_id) or self._cache.get(item.stream_id)
        if isinstance(command, lm.RecordLspOrderReport):
            # An executor reports for its own node only; anything else reads as not found.
            executor = principal is not None and principal.role == "executor"
            if principal is not None and not executor and principal.role != "engine":
                state = None
            if state is not None and executor and principal.id != state.node:  # type: ignore[union-attr]
                state = None
            caller = state.caller if state is not None else Caller(id="corridor", kind="service")
        else:
            if principal is None or principal.role not in ("operator", "caller", "engine"):
                plan.replies.append(
                    rejected(errors.Forbidden("operators and service callers order channels"))
                )
                return
            if command.corridor is None:
                error = errors.CorridorError(
                    "an LSP order names the corridor that pays it", field="corridor",
                    code="missing_corridor",
                )  # fmt: skip
                plan.replies.append(rejected(error))
                return
            caller = Caller(
                id=principal.id, kind="service" if principal.role == "caller" else "human"
            )
        ctx = LspOrderContext(
            lsp_order_id=item.stream_id, request_fingerprint=item.request_fingerprint or (
                state.request_fingerprint if state else ""
            ),
            caller=caller, policy=self._policy, now_ms=now_ms,
        )  # fmt: skip
        decision = decide(state, command, ctx)
        if isinstance(decision, Refusal):
            error = errors.CorridorError(
                f"LSP order refused: {decision.code}", field=decision.field, code=decision.code
            )
            plan.replies.append(rejected(error))
            return
        if not decision:
            assert state is not None
            plan.replies.append(
                accepted(item.stream_id, str(state.status), duplicate=True, reason=state.outcome)
            )
            return
        first_version = (state.version if state else 0) + 1
        events = decision
        if self._signer is not None:
            events = sign_lsp_orders(self._signer, item.stream_id, first_version, decision)
        new_state = state
        for event in events:
            new_state = evolve(new_state, event)
        assert new_state is not None
        add_events(plan, item, item.stream_id, first_version, events,
                   owner=new_state.caller.id, new_id=self._new_id, now_ms=now_ms)  # fmt: skip
        plan.lsp_orders[item.stream_id] = new_state
        status = str(new_state.status)
        reply = accepted(item.stream_id, status, duplicate=False, reason=new_state.outcome)
        plan.replies.append(reply)
