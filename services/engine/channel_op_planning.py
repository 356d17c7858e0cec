"""Channel operations in the engine (ADR 0234): the writer loop's committed state of
``chop-`` streams and the planner that decides a command against it. The processor only
routes ``OpenChannel``, ``CloseChannel`` and ``RecordChannelOpReport`` here.

Who may do what comes from the credential (the subject's token), never from the payload:
operators open and close (the operator is the operation's caller); an executor reports only
for the node it is, the node the operation names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeGuard

from schemas import channel_messages as cm
from schemas import errors
from schemas.commands import ApprovePaymentIntent, RejectPaymentIntent
from schemas.common import Caller
from schemas.replies import CommandAccepted
from services.domain.channel_ops import (
    ChannelOp,
    ChannelOpContext,
    ChannelPolicy,
    Refusal,
    decide,
    evolve,
    replay,
)
from services.domain.channel_ops.budget import FeeBudget, budget_events
from services.domain.channel_ops.decide import CHANNEL_FEE_BUDGET_MSAT_PER_DAY
from services.domain.rebalance import DayBudget, evolve_budget
from services.engine.batch_plan import BatchPlan
from services.engine.channel_op_budget import budget_stream_of, day_of
from services.engine.commands import QueuedCommand, rejected
from services.engine.rebalance_planning import DAY_TURNED, RebalanceBook
from services.engine.stream_planning import accepted, add_events, evolved
from services.engine.stream_state_cache import StreamStateCache
from services.eventstore.port import EventStore
from services.signing.channel_orders import sign_channel_orders
from services.signing.port import Signer

CHANNEL_OP_COMMANDS: Final = cm.CHANNEL_OP_COMMAND_TYPES
MSAT_PER_SAT: Final = 1000
# lnd's default largest channel without wumbo (2^24 - 1 sat): the default line between opens
# that run at once and opens a second operator approves (ADR 0236).
OPEN_MSAT_MAX: Final = (2**24 - 1) * MSAT_PER_SAT
# The most one transaction's fee may cost, whatever the request allows: 100k sat is a
# funding transaction at ~650 sat/vB, far above any sane rate, below a unit mistake's cost.
ONCHAIN_FEE_MSAT_MAX: Final = 100_000 * MSAT_PER_SAT
# Without settings (tests of the engine alone): every open within lnd's non-wumbo limit runs
# at once, and nothing larger is accepted.
ENGINE_CHANNEL_POLICY: Final = ChannelPolicy(
    auto_open_msat_max=OPEN_MSAT_MAX,
    open_msat_max=OPEN_MSAT_MAX,
    onchain_fee_msat_max=ONCHAIN_FEE_MSAT_MAX,
)


def channel_policy(
    *,
    auto_open_msat_max: int,
    open_msat_max: int,
    fee_budget_msat_per_day: int = CHANNEL_FEE_BUDGET_MSAT_PER_DAY,
) -> ChannelPolicy:
    """The engine's channel policy from its settings (ADR 0236, 0285)."""
    return ChannelPolicy(
        auto_open_msat_max=min(auto_open_msat_max, open_msat_max),
        open_msat_max=open_msat_max,
        onchain_fee_msat_max=ONCHAIN_FEE_MSAT_MAX,
        fee_budget_msat_per_day=fee_budget_msat_per_day,
    )


def is_channel_op_decision(
    command: object, stream_id: str
) -> TypeGuard[ApprovePaymentIntent | RejectPaymentIntent]:
    """An operator's approve or reject addressed to a channel operation (ADR 0236)."""
    return isinstance(command, ApprovePaymentIntent | RejectPaymentIntent) and (
        cm.is_channel_op_stream(stream_id)
    )


class ChannelOpCache(StreamStateCache[ChannelOp]):
    """Committed channel operations."""

    def __init__(self, store: EventStore, *, cache_max: int) -> None:
        super().__init__(store, cache_max=cache_max, fold=replay)


def channel_op_accepted(state: ChannelOp, *, duplicate: bool) -> CommandAccepted:
    return accepted(state.op_id, str(state.status), duplicate=duplicate, reason=state.rejection)


class ChannelOpPlanner:
    def __init__(
        self,
        *,
        new_id: Callable[[], str],
        signer: Signer | None,
        policy: ChannelPolicy = ENGINE_CHANNEL_POLICY,
        budgets: RebalanceBook | None = None,
    ) -> None:
        # The regions' day budgets rebalances also use (ADR 0285); ``None``: fees unbudgeted.
        self._budgets = budgets
        self._new_id = new_id
        # ``None``: orders go unsigned and executors refuse them (tests of the engine alone).
        self._signer = signer
        self._policy = policy

    def plan(
        self,
        plan: BatchPlan,
        item: QueuedCommand,
        command: cm.ChannelOpCommand | ApprovePaymentIntent | RejectPaymentIntent,
        state: ChannelOp | None,
        *,
        now_ms: int,
    ) -> None:
        principal = item.envelope.principal
        if isinstance(command, cm.RecordChannelOpReport):
            # An executor reports for its own node only; anything else reads as not found.
            executor = principal is not None and principal.role == "executor"
            if state is not None and executor and principal.id != state.node:  # type: ignore[union-attr]
                state = None
        elif principal is None or principal.role not in ("operator", "engine"):
            plan.replies.append(rejected(errors.Forbidden("operators open and close channels")))
            return
        caller = Caller(id=principal.id if principal else "corridor", kind="human")
        fee_budget: FeeBudget | None = None
        budget_id = budget_stream_of(command, state, now_ms) if self._budgets else None
        if budget_id is not None:
            fee_budget = self._fee_budget(plan, budget_id, command, state)
            if fee_budget is None:  # read for another day than this (midnight passed)
                plan.replies.append(rejected(DAY_TURNED))
                return
        ctx = ChannelOpContext(
            op_id=item.stream_id, request_fingerprint=item.request_fingerprint or "",
            caller=caller, policy=self._policy, fee_budget=fee_budget,
        )  # fmt: skip
        decision = decide(state, command, ctx)
        if isinstance(decision, Refusal):
            error = errors.CorridorError(
                f"channel operation refused: {decision.code}", field=decision.field,
                code=decision.code,
            )  # fmt: skip
            plan.replies.append(rejected(error))
            return
        if not decision:
            assert state is not None
            plan.replies.append(channel_op_accepted(state, duplicate=True))
            return
        first_version = (state.version if state else 0) + 1
        new_events = decision
        if self._signer is not None:
            new_events = sign_channel_orders(self._signer, item.stream_id, first_version, decision)
        new_state = evolved(state, new_events, evolve)
        owner = new_state.caller.id  # the relay's subject token (ADR 0067)
        add_events(plan, item, item.stream_id, first_version, new_events, owner=owner,
                   new_id=self._new_id, now_ms=now_ms)  # fmt: skip
        budget_side = budget_events(state, new_events, fee_budget)
        if budget_side:
            assert fee_budget is not None
            new_budget: DayBudget | None = fee_budget.state
            for event in budget_side:
                new_budget = evolve_budget(new_budget, event)
            version = (fee_budget.state.version if fee_budget.state else 0) + 1
            add_events(plan, item, fee_budget.stream_id, version, budget_side, owner=owner,
                       new_id=self._new_id, now_ms=now_ms)  # fmt: skip
            assert new_budget is not None
            plan.rebalance_budgets[fee_budget.stream_id] = new_budget
        plan.channel_ops[item.stream_id] = new_state
        plan.replies.append(channel_op_accepted(new_state, duplicate=False))

    def _fee_budget(
        self, plan: BatchPlan, stream_id: str, command: object, state: ChannelOp | None
    ) -> FeeBudget | None:
        """The day budget as this batch left it, or ``None`` when it was not read."""
        assert self._budgets is not None
        if stream_id in plan.rebalance_budgets:
            day_state: DayBudget | None = plan.rebalance_budgets[stream_id]
        elif self._budgets.budgets.known(stream_id):
            day_state = self._budgets.budgets.get(stream_id)
        else:
            return None
        region = command.region if isinstance(command, cm.OpenChannel | cm.CloseChannel) else (
            state.region if state else None
        )  # fmt: skip
        assert region is not None
        return FeeBudget(
            stream_id=stream_id, region=region, day=day_of(stream_id),
            budget_msat=self._policy.fee_budget_msat_per_day, state=day_state,
        )  # fmt: skip
