"""Rebalances in the engine (ADR 0244, 0245): the writer loop's committed state of ``rbl-``
streams and of the days' budget streams (``rblb-``), and the planner that decides a command
against them. The processor only routes ``RequestRebalance`` and the executors'
``RecordPaymentOutcome`` for a ``rbl-`` id here.

A request is judged against today's budget stream of its source region, a report against the
budget stream its rebalance reserved on. Both streams are appended in one batch with their
stream versions, so two engines that reserve on one day's budget at once cannot both pass:
the second append fails and its batch is decided again on the log's figures (ADR 0073).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from schemas import errors
from schemas.commands import RecordPaymentOutcome
from schemas.rebalance_messages import (
    ApproveRebalance,
    RebalanceRejected,
    RequestRebalance,
    budget_day,
    budget_stream_id,
    is_rebalance_stream,
)
from services.domain.rebalance import (
    DayBudget,
    Rebalance,
    RebalanceContext,
    RebalanceRules,
    budget_stream_for,
    decide,
    evolve,
    evolve_budget,
    fold,
    fold_budget,
)
from services.domain.rebalance.ours import NOT_OUR_NODE, NodeDirectory, refusal_error
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, rejected
from services.engine.stream_planning import accepted, add_events
from services.engine.stream_state_cache import StreamStateCache
from services.eventstore.port import EventStore
from services.signing.port import Signer
from services.signing.rebalance_orders import sign_rebalance_orders

RebalanceCommand = RequestRebalance | ApproveRebalance | RecordPaymentOutcome
# The default tier limit and budget when the engine is built without settings (tests): the
# planner's own defaults (``liquidity_move_max_msat``, ``liquidity_fee_budget_msat_per_day``).
DEFAULT_RULES: Final = RebalanceRules(
    auto_amount_msat_max=10_000_000, fee_budget_msat_per_day=100_000, pay_timeout_s=60
)
DAY_TURNED: Final = errors.Unavailable("the budget day turned while deciding; retry")


def is_rebalance_item(item: QueuedCommand) -> bool:
    command = item.envelope.command
    return isinstance(command, RequestRebalance | ApproveRebalance) or (
        isinstance(command, RecordPaymentOutcome) and is_rebalance_stream(item.stream_id)
    )


def _budget_id(command: object, state: Rebalance | None, now_ms: int) -> str | None:
    """The budget stream a command is judged by: today's of the source for a request or an
    approval (ADR 0245), the one its rebalance reserved on for an executor's report."""
    if isinstance(command, RequestRebalance):
        return budget_stream_for(command, now_ms)
    if state is None:
        return None
    if isinstance(command, ApproveRebalance):
        return budget_stream_id(state.source_region, budget_day(now_ms))
    return state.budget_stream


class RebalanceBook:
    """Committed rebalances and day budgets, read for each batch that names them."""

    def __init__(self, store: EventStore, *, cache_max: int, now_ms: Callable[[], int]) -> None:
        # The engine's clock: today's budget stream is the one a request will be judged by.
        self._now_ms = now_ms
        self.rebalances = StreamStateCache[Rebalance](store, cache_max=cache_max, fold=fold)
        self.budgets = StreamStateCache[DayBudget](store, cache_max=cache_max, fold=fold_budget)

    async def load(self, items: Sequence[QueuedCommand]) -> None:
        """Every rebalance stream of the batch, then the budget streams they are judged by
        (a report's is named in its rebalance's state, so that is read first)."""
        mine = [i for i in items if i.error is None and is_rebalance_item(i)]
        if not mine:
            return
        await self.rebalances.load([i.stream_id for i in mine])
        budgets: list[str] = []
        now_ms = self._now_ms()
        for item in mine:
            command = item.envelope.command
            state = self.rebalances.get(item.stream_id)
            budget_id = _budget_id(command, state, now_ms)
            if budget_id is not None:
                budgets.append(budget_id)
        await self.budgets.load(budgets)

    def now_ms(self) -> int:
        return self._now_ms()

    def adopt(self, plan: BatchPlan) -> None:
        for stream_id, state in plan.rebalances.items():
            self.rebalances.remember(stream_id, state)
        for stream_id, budget in plan.rebalance_budgets.items():
            self.budgets.remember(stream_id, budget)

    def forget(self, stream_id: str) -> None:
        self.rebalances.forget(stream_id)
        # A conflict may have been on a budget stream another engine appended to: read the
        # budgets again (a few streams a day per region).
        self.budgets.clear()


class RebalancePlanner:
    def __init__(
        self,
        book: RebalanceBook,
        *,
        new_id: Callable[[], str],
        signer: Signer | None,
        rules: RebalanceRules = DEFAULT_RULES,
        nodes: Callable[[], NodeDirectory] = dict,
    ) -> None:
        self._book = book
        # Our nodes and their pubkeys as the engine knows them (ADR 0249); none: it pays none.
        self._nodes = nodes
        self._new_id = new_id
        # ``None``: orders go unsigned and executors refuse them (tests of the engine alone).
        self._signer = signer
        self._rules = rules

    def _budget(self, plan: BatchPlan, stream_id: str) -> tuple[bool, DayBudget | None]:
        if stream_id in plan.rebalance_budgets:
            return True, plan.rebalance_budgets[stream_id]
        return self._book.budgets.known(stream_id), self._book.budgets.get(stream_id)

    def plan(self, plan: BatchPlan, item: QueuedCommand, *, now_ms: int) -> None:
        command = item.envelope.command
        assert isinstance(command, RequestRebalance | ApproveRebalance | RecordPaymentOutcome)
        principal = item.envelope.principal
        if (
            isinstance(command, ApproveRebalance)
            and principal is not None
            and (principal.role not in ("operator", "engine"))
        ):
            plan.replies.append(rejected(errors.Forbidden("operators approve rebalances")))
            return
        state = plan.rebalances.get(item.stream_id) or self._book.rebalances.get(item.stream_id)
        budget_id = _budget_id(command, state, now_ms)
        budget: DayBudget | None = None
        if budget_id is not None:
            known, budget = self._budget(plan, budget_id)
            if not known:  # read for another day than this (midnight passed in between)
                plan.replies.append(rejected(DAY_TURNED))
                return
        ctx = RebalanceContext(
            now_ms=now_ms, rules=self._rules, rebalance_id=item.stream_id,
            request_fingerprint=item.request_fingerprint, budget=budget, invoice=item.invoice,
            nodes=self._nodes() if not isinstance(command, RecordPaymentOutcome) else {},
        )  # fmt: skip
        try:
            decided = decide(state, command, ctx)
        except errors.CorridorError as exc:
            plan.replies.append(rejected(exc))
            return
        if not decided.events:
            assert state is not None
            plan.replies.append(
                accepted(item.stream_id, str(state.status), duplicate=True, reason=state.reason)
            )
            return
        first_version = (state.version if state else 0) + 1
        events = decided.events
        if self._signer is not None:
            events = sign_rebalance_orders(self._signer, item.stream_id, first_version, events)
        new_state = state
        for event in events:
            new_state = evolve(new_state, event)
        assert new_state is not None
        owner = new_state.caller.id  # the relay's subject token (ADR 0067)
        add_events(plan, item, item.stream_id, first_version, events, owner=owner,
                   new_id=self._new_id, now_ms=now_ms)  # fmt: skip
        if decided.budget:
            assert budget_id is not None
            new_budget = budget
            for event in decided.budget:
                new_budget = evolve_budget(new_budget, event)
            assert new_budget is not None
            add_events(plan, item, budget_id, (budget.version if budget else 0) + 1,
                       decided.budget, owner=owner, new_id=self._new_id,
                       now_ms=now_ms)  # fmt: skip
            plan.rebalance_budgets[budget_id] = new_budget
        plan.rebalances[item.stream_id] = new_state
        outside = [e for e in events if isinstance(e, RebalanceRejected)
                   and e.reason == NOT_OUR_NODE]  # fmt: skip
        if outside:
            # Recorded above (the audit trail, with the actor), and refused as an error that
            # names the field: a request that would pay outside our nodes is no move.
            plan.replies.append(rejected(refusal_error(outside[0])))
            return
        status = str(new_state.status)
        reply = accepted(item.stream_id, status, duplicate=False, reason=new_state.reason)
        plan.replies.append(reply)
