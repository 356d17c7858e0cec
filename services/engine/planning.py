"""Planning one batch: each command decided against the state the previous one left, and
handed to its aggregate's planner (``intent_planning``, ``policy_planning``,
``agent_key_planning``). Nothing here touches the store: the plan is what the writer loop
appends, and what it adopts once that commits."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from schemas import errors
from schemas.commands import SubmitPaymentIntent
from schemas.policy_messages import ApprovePolicy, ProposePolicy
from schemas.rebalance_messages import REBALANCE_COMMAND_TYPES
from schemas.replies import CommandRejected
from services.domain.policy import PolicyEngine
from services.domain.routing import Router
from services.engine.agent_key_book import AgentKeyBook
from services.engine.agent_key_planning import AGENT_KEY_COMMANDS, plan_agent_key_command
from services.engine.batch_plan import BatchPlan
from services.engine.channel_op_planning import (
    CHANNEL_OP_COMMANDS,
    ChannelOpCache,
    ChannelOpPlanner,
    is_channel_op_decision,
)
from services.engine.clock import Clock
from services.engine.commands import QueuedCommand, actor, rejected
from services.engine.intent_cache import IntentCache
from services.engine.intent_planning import IntentPlanner
from services.engine.jit_planning import JIT_COMMANDS, JitCache, JitPlanner
from services.engine.lsp_order_planning import LSP_ORDER_COMMANDS, LspOrderPlanner
from services.engine.payee_payments import payee_policy, record_first_payment
from services.engine.payee_planning import PAYEE_COMMANDS, PayeeCache, PayeePlanner
from services.engine.policy_book import PolicyBook
from services.engine.policy_planning import plan_policy_command
from services.engine.rebalance_planning import RebalancePlanner, is_rebalance_item
from services.engine.receive_cache import ReceiveCache
from services.engine.receive_planning import RECEIVE_COMMANDS, ReceivePlanner
from services.engine.reconciliation_book import ReconciliationBook
from services.engine.reconciliation_planning import (
    RECONCILIATION_COMMANDS,
    plan_reconciliation_command,
)
from services.engine.spend_book import SpendBook
from services.engine.webhook_book import WebhookBook
from services.engine.webhook_planning import WEBHOOK_COMMANDS, endpoint_of, plan_webhook_command
from services.identity.agent_keys import AgentKeyLookup


class Planner:
    def __init__(
        self,
        intents: IntentPlanner,
        *,
        clock: Clock,
        new_id: Callable[[], str],
        router: Callable[[], Router],
        cache: IntentCache,
        policy: PolicyBook,
        spend: SpendBook,
        agent_keys: AgentKeyBook,
        key_lookup: AgentKeyLookup,
        recon: ReconciliationBook,
        webhooks: WebhookBook | None = None,
        receives: ReceivePlanner | None = None,
        receive_cache: ReceiveCache | None = None,
        channel_ops: tuple[ChannelOpPlanner, ChannelOpCache] | None = None,
        rebalances: RebalancePlanner | None = None,
        jit_sales: tuple[JitPlanner, JitCache] | None = None,
        payees: tuple[PayeePlanner, PayeeCache] | None = None,
        lsp_orders: LspOrderPlanner | None = None,
    ) -> None:
        self._lsp_orders = lsp_orders
        self._rebalances = rebalances
        self._jit_sales = jit_sales
        self._payees = payees
        self._receives = receives
        self._receive_cache = receive_cache
        self._channel_ops = channel_ops
        self._recon = recon
        self._webhooks = webhooks or WebhookBook()
        self._intents = intents
        self._clock = clock
        self._new_id = new_id
        self._router = router
        self._cache = cache
        self._policy = policy
        self._spend = spend
        self._agent_keys = agent_keys
        # What an agent submit's key is checked against again: the log's keys, or a fixed set
        # a test hands the bootstrap.
        self.key_lookup = key_lookup

    def plan(self, items: Sequence[QueuedCommand]) -> BatchPlan:
        now_ms = self._clock.now_ms()
        plan = BatchPlan(policy_state=self._policy.state)
        router = self._router()
        tracker = self._spend.tracker
        for item in items:
            base_policy = plan.activated or self._policy.in_force()
            policy = (
                base_policy.with_spend(tracker)
                if isinstance(base_policy, PolicyEngine)
                else base_policy
            )
            if item.error is not None:
                plan.replies.append(rejected(item.error))
                continue
            command = item.envelope.command
            if isinstance(command, ProposePolicy | ApprovePolicy):
                reply = plan_policy_command(
                    plan, item, command, now_ms=now_ms, new_id=self._new_id,
                    baseline_version=self._policy.baseline_version,
                )  # fmt: skip
                plan.replies.append(reply)
                continue
            if isinstance(command, AGENT_KEY_COMMANDS):
                book = plan.agent_keys or self._agent_keys
                reply, plan.agent_keys, events = plan_agent_key_command(
                    book, command, item.envelope, now_ms=now_ms, new_id=self._new_id,
                    actor=actor(item.envelope),
                )  # fmt: skip
                plan.events += events
                plan.replies.append(reply)
                continue
            if isinstance(command, RECONCILIATION_COMMANDS):
                ledger = plan.ledgers.get(command.node) or self._recon.get(command.node)
                reply, after, events = plan_reconciliation_command(
                    ledger, command, item.envelope, now_ms=now_ms, new_id=self._new_id,
                    actor=actor(item.envelope),
                )  # fmt: skip
                if after is not None:
                    plan.ledgers[command.node] = after
                plan.events += events
                plan.replies.append(reply)
                continue
            if isinstance(command, WEBHOOK_COMMANDS):
                endpoint_id = endpoint_of(command)
                endpoint = plan.webhooks.get(endpoint_id) or self._webhooks.get(endpoint_id)
                reply, endpoint, events = plan_webhook_command(
                    endpoint, command, item.envelope, book=self._webhooks, now_ms=now_ms,
                    new_id=self._new_id, actor=actor(item.envelope),
                )  # fmt: skip
                if endpoint is not None:
                    plan.webhooks[endpoint_id] = endpoint
                plan.events += events
                plan.replies.append(reply)
                continue
            if isinstance(command, RECEIVE_COMMANDS):
                if self._receives is None or self._receive_cache is None:
                    plan.replies.append(rejected(errors.Unavailable("receiving is not set up")))
                    continue
                held = plan.receives.get(item.stream_id) or self._receive_cache.get(item.stream_id)
                self._receives.plan(
                    plan, item, command, held, router=router, now_ms=now_ms
                )  # fmt: skip
                continue
            if isinstance(command, CHANNEL_OP_COMMANDS) or is_channel_op_decision(
                command, item.stream_id
            ):  # ADR 0234, 0236
                if self._channel_ops is None:
                    plan.replies.append(rejected(errors.Unavailable("channels are not set up")))
                    continue
                ops, committed = self._channel_ops
                op = plan.channel_ops.get(item.stream_id) or committed.get(item.stream_id)
                ops.plan(plan, item, command, op, now_ms=now_ms)
                continue
            if is_rebalance_item(item) or isinstance(command, REBALANCE_COMMAND_TYPES):  # ADR 0244
                if self._rebalances is None:
                    plan.replies.append(rejected(errors.Unavailable("rebalances are not set up")))
                    continue
                self._rebalances.plan(plan, item, now_ms=now_ms)
                continue
            if isinstance(command, JIT_COMMANDS):  # ADR 0261
                if self._jit_sales is None:
                    plan.replies.append(rejected(errors.Unavailable("JIT channels are not set up")))
                    continue
                sales, committed_sales = self._jit_sales
                sale = plan.jit_sales.get(item.stream_id) or committed_sales.get(item.stream_id)
                sales.plan(plan, item, command, sale, now_ms=now_ms)
                continue
            if isinstance(command, PAYEE_COMMANDS):  # ADR 0270
                if self._payees is None:
                    plan.replies.append(rejected(errors.Unavailable("payees are not set up")))
                    continue
                payees, known = self._payees
                payee = plan.payees.get(item.stream_id) or known.get(item.stream_id)
                payees.plan(plan, item, command, payee, now_ms=now_ms)
                continue
            if isinstance(command, LSP_ORDER_COMMANDS):  # ADR 0252
                if self._lsp_orders is None:
                    plan.replies.append(rejected(errors.Unavailable("LSP orders are not set up")))
                    continue
                self._lsp_orders.plan(plan, item, now_ms=now_ms)
                continue
            state = plan.states.get(item.stream_id, self._cache.get(item.stream_id))
            keys = plan.agent_keys if plan.agent_keys is not None else self.key_lookup
            payee = None
            if isinstance(command, SubmitPaymentIntent) and command.payee_id and state is None:
                # A payment to an onboarded payee (ADR 0272): their wallet, their rules.
                pid = command.payee_id
                payee = plan.payees.get(pid) or (self._payees[1].get(pid) if self._payees else None)
                judged = payee_policy(item, command, payee, policy)
                if isinstance(judged, CommandRejected):
                    plan.replies.append(judged)
                    continue
                policy = judged
            self._intents.plan(
                plan, item, command, state, policy=policy, router=router, keys=keys,
                now_ms=now_ms,
            )  # fmt: skip
            if payee is not None:
                record_first_payment(plan, item, payee, state, now_ms=now_ms, new_id=self._new_id)
        return plan
