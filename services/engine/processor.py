"""The command processor: the engine's parts for commands, put together (ADR 0094).

Each part has one job and its own module:

- ``writer.py``: the single writer loop with group commit (queue, batches, append, replies,
  the split of a failed batch), publishing each commit on ``committed.py``'s channel;
- ``planning.py``: one batch decided command by command, per aggregate
  (``intent_planning.py``, ``policy_planning.py``, ``agent_key_planning.py``);
- ``spend_book.py``: the spend book limits are judged by (loading, pruning, fences);
- ``intent_cache.py``: the committed-state cache; ``policy_book.py``: the policy in force;
- ``read_side.py``: status, get and policy show.

``CommandProcessor`` is the façade the intake, deadlines and sweeper call.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView, PolicyView
from services.domain.channel_ops import ChannelPolicy
from services.domain.jit_channels import JitPolicy
from services.domain.policy import Policy
from services.domain.principal import Principal
from services.domain.rebalance import RebalanceRules
from services.domain.routing import Router
from services.engine.agent_key_book import AgentKeyBook
from services.engine.channel_op_planning import (
    ENGINE_CHANNEL_POLICY,
    ChannelOpCache,
    ChannelOpPlanner,
)
from services.engine.clock import Clock, IdSource
from services.engine.commands import CommandEnvelope, Reply
from services.engine.committed import CommittedBatches
from services.engine.intent_cache import IntentCache
from services.engine.intent_planning import IntentPlanner, IntentRules
from services.engine.invoice_cursors import InvoiceCursors
from services.engine.jit_planning import DEFAULT_JIT_POLICY, JitCache, JitPlanner
from services.engine.lsp_order_planning import LspOrderCache, LspOrderPlanner
from services.engine.our_nodes import OurNodes
from services.engine.payee_planning import PayeeCache, PayeePlanner
from services.engine.planning import Planner
from services.engine.policy_book import PolicyBook
from services.engine.read_side import ReadSide
from services.engine.rebalance_planning import DEFAULT_RULES, RebalanceBook, RebalancePlanner
from services.engine.receive_cache import ReceiveCache
from services.engine.receive_planning import ReceivePlanner
from services.engine.reconciliation_book import ReconciliationBook
from services.engine.rejection_budget import RejectionBudget
from services.engine.spend_book import SpendBook
from services.engine.webhook_book import WebhookBook
from services.engine.writer import WriterLoop
from services.eventstore.port import EventStore
from services.identity.agent_keys import AgentKeyLookup
from services.signing.port import Signer

__all__ = ["CommandEnvelope", "CommandProcessor", "Reply"]


class CommandProcessor:
    def __init__(
        self,
        store: EventStore,
        *,
        clock: Clock,
        ids: IdSource,
        policy: Callable[[], Policy],
        router: Callable[[], Router],
        network: str,
        attempts_max: int = 3,
        pay_timeout_s: int = 60,
        batch_max: int = 256,
        queue_max: int = 4096,
        cache_max: int = 20_000,
        baseline_policy_version: int = 0,
        signer: Signer | None = None,
        rejections_per_minute: int = 60,
        committed: CommittedBatches | None = None,
        key_lookup: AgentKeyLookup | None = None,
        webhooks: WebhookBook | None = None,
        rebalance_rules: RebalanceRules = DEFAULT_RULES,
        channel_policy: ChannelPolicy = ENGINE_CHANNEL_POLICY,
        jit_policy: JitPolicy = DEFAULT_JIT_POLICY,
        our_nodes: OurNodes | None = None,
    ) -> None:
        """``committed``: where each commit is published (ADR 0095); the spend book hears the
        checkpointer's appends there. ``key_lookup``: the agent keys a submit is judged by
        again; by default the ones the log trusts (``agent_keys``)."""
        self.committed = committed if committed is not None else CommittedBatches()
        self.cache = cache = IntentCache(store, cache_max=cache_max)
        self.policy = PolicyBook(store, fallback=policy, baseline_version=baseline_policy_version)
        self.spend = SpendBook(store, clock)
        self.committed.subscribe("spend-book", self.spend.note)
        # The agent keys the log trusts (ADR 0068); the intake verifies signatures against it.
        self.agent_keys = AgentKeyBook()
        # Every node's reconciliation ledger; its tripped breakers are routed around (ADR 0151).
        self.recon = ReconciliationBook()
        # Webhook endpoints (ADR 0175): their rules and the secrets shown on registration.
        self.webhooks = webhooks if webhooks is not None else WebhookBook()
        self.store = store  # the webhook list catches up from it (services/intake/webhooks.py)
        self.key_lookup: AgentKeyLookup = key_lookup if key_lookup is not None else self.agent_keys
        intents = IntentPlanner(
            IntentRules(network=network, attempts_max=attempts_max, pay_timeout_s=pay_timeout_s),
            self.spend,
            new_id=ids.new_id,
            signer=signer,
            rejections=RejectionBudget(rejections_per_minute),
        )
        # Receive intents (ADR 0220): their own committed-state cache and planner.
        self.receives = ReceiveCache(store, cache_max=cache_max)
        self.invoice_cursors = InvoiceCursors()
        # Channel operations (ADR 0234): their own committed-state cache and planner.
        self.channel_ops = ChannelOpCache(store, cache_max=cache_max)
        # Rebalances (ADR 0244): their streams, the days' budgets, and their planner.
        self.rebalances = RebalanceBook(store, cache_max=cache_max, now_ms=clock.now_ms)
        self.jit_sales = JitCache(store, cache_max=cache_max)  # ADR 0261
        self.payees = PayeeCache(store, cache_max=cache_max)  # ADR 0270
        self.our_nodes = our_nodes if our_nodes is not None else OurNodes(())  # ADR 0249
        # LSP orders (ADR 0252): their committed-state cache and planner.
        self.lsp_orders = LspOrderCache(store, cache_max=cache_max)
        planner = Planner(
            intents, clock=clock, new_id=ids.new_id, router=router, cache=cache,
            policy=self.policy, spend=self.spend, agent_keys=self.agent_keys,
            key_lookup=self.key_lookup, recon=self.recon, webhooks=self.webhooks,
            receives=ReceivePlanner(new_id=ids.new_id, signer=signer),
            receive_cache=self.receives,
            channel_ops=(
                ChannelOpPlanner(
                    new_id=ids.new_id, signer=signer, policy=channel_policy, budgets=self.rebalances
                ),
                self.channel_ops,
            ),
            rebalances=RebalancePlanner(
                self.rebalances, new_id=ids.new_id, signer=signer, rules=rebalance_rules,
                nodes=self.our_nodes.directory,
            ),
            jit_sales=(
                JitPlanner(new_id=ids.new_id, signer=signer, policy=jit_policy),
                self.jit_sales,
            ),
            payees=(PayeePlanner(new_id=ids.new_id), self.payees),
            lsp_orders=LspOrderPlanner(self.lsp_orders, new_id=ids.new_id, signer=signer),
        )  # fmt: skip
        self.writer = WriterLoop(
            store, planner, cache=cache, policy=self.policy, spend=self.spend,
            agent_keys=self.agent_keys, committed=self.committed, batch_max=batch_max,
            queue_max=queue_max, recon=self.recon, webhooks=self.webhooks,
            receives=self.receives,
            channel_ops=self.channel_ops, rebalances=self.rebalances, lsp_orders=self.lsp_orders,
            jit_sales=self.jit_sales,
            payees=self.payees,
        )  # fmt: skip
        self.reads = ReadSide(store, cache, self.policy)

    # The writer loop.
    async def execute(self, envelope: CommandEnvelope) -> Reply:
        """Queue a command and wait until it is committed (or refused)."""
        return await self.writer.execute(envelope)

    async def run(self) -> None:
        await self.writer.run()

    @property
    def batches(self) -> int:
        return self.writer.batches

    @property
    def commands(self) -> int:
        return self.writer.commands

    # Loaded at start.
    async def load_policy_state(self) -> None:
        await self.policy.load()

    async def load_spend(self) -> int:
        """Rebuild the spend book from the log's recent events; returns events folded."""
        return await self.spend.load()

    # The read side.
    async def status(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentStatus | CommandRejected:
        return await self.reads.status(intent_id, reader=reader)

    def cached_status(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentStatus | None:
        return self.reads.cached_status(intent_id, reader=reader)

    async def view(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentView | CommandRejected:
        return await self.reads.view(intent_id, reader=reader)

    async def current_policy_view(self) -> PolicyView | CommandRejected:
        return await self.reads.current_policy_view()

    def policy_view(self) -> PolicyView | CommandRejected:
        return self.reads.policy_view()

    @property
    def active_policy_version(self) -> int | None:
        return self.reads.active_policy_version
