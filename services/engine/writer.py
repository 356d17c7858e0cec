"""The single writer loop, with group commit.

Commands from every entry point go through one bounded queue. The loop takes whatever is queued
(up to ``batch_max``), has the planner decide each command against the state left by the
previous one, and appends all resulting events in one transaction. Replies are sent only after
that commit. A conflicting writer elsewhere (another engine instance) makes the append fail as
a whole; then each command is retried on its own against fresh state. Spend limits and the
policy in force are judged against this engine's view of the log; the append carries fences
that fail it when another engine moved either since, and the batch is judged again after
catching up (ADR 0073). A batch that fails for good is split, so that only the guilty command
is refused (``isolation.py``, ADR 0070). Each commit is published on the committed-batches
channel (ADR 0095).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from schemas import errors
from schemas.channel_messages import CHANNEL_OP_STREAM_PREFIX
from schemas.jit_messages import JIT_STREAM_PREFIX
from schemas.lsp_messages import LSP_ORDER_STREAM_PREFIX
from schemas.payee_messages import PAYEE_STREAM_PREFIX
from schemas.rebalance_messages import REBALANCE_BUDGET_STREAM_PREFIX, REBALANCE_STREAM_PREFIX
from schemas.receive_messages import RECEIVE_STREAM_PREFIX
from schemas.reconciliation_messages import RECONCILIATION_STREAM_PREFIX
from schemas.webhook_messages import WEBHOOK_STREAM_PREFIX
from services.domain.agent_keys import AGENT_KEYS_STREAM
from services.engine import isolation
from services.engine.agent_key_book import AgentKeyBook
from services.engine.batch_plan import BatchPlan
from services.engine.channel_op_budget import load_channel_budgets
from services.engine.channel_op_planning import ChannelOpCache
from services.engine.commands import (
    CommandEnvelope,
    QueuedCommand,
    Reply,
    assumed_new,
    prepare,
    rejected,
)
from services.engine.committed import CommittedBatch, CommittedBatches, Writer
from services.engine.event_codec import POLICY_STREAM
from services.engine.intent_cache import IntentCache
from services.engine.jit_planning import JitCache
from services.engine.lsp_order_planning import LspOrderCache
from services.engine.payee_planning import PayeeCache, named_payees
from services.engine.planning import Planner
from services.engine.policy_book import PolicyBook
from services.engine.rebalance_planning import RebalanceBook
from services.engine.receive_cache import ReceiveCache
from services.engine.reconciliation_book import ReconciliationBook
from services.engine.spend_book import SpendBook
from services.engine.webhook_book import WebhookBook
from services.eventstore.port import (
    AppendFence,
    ClaimConflict,
    ConcurrencyConflict,
    EventStore,
    StalePolicy,
    StaleView,
)
from services.failures import is_transient

log = structlog.get_logger("corridor.processor")

RECON = RECONCILIATION_STREAM_PREFIX
HOOK = WEBHOOK_STREAM_PREFIX
RCV = RECEIVE_STREAM_PREFIX
RBL = (REBALANCE_STREAM_PREFIX, REBALANCE_BUDGET_STREAM_PREFIX)
LSP = LSP_ORDER_STREAM_PREFIX
CHOP = CHANNEL_OP_STREAM_PREFIX
JIT = JIT_STREAM_PREFIX
PAYEE = PAYEE_STREAM_PREFIX

# A command that keeps losing optimistic-concurrency races gives up after this many tries.
CONFLICT_RETRIES_MAX = 5
# A batch judged on a view another engine moved is judged again after catching up; while other
# engines keep moving the same callers it may lose again, and after this many it goes on one
# command at a time (``CONFLICT_RETRIES_MAX`` each).
STALE_RETRIES_MAX = 4


class WriterLoop:
    def __init__(
        self,
        store: EventStore,
        planner: Planner,
        *,
        cache: IntentCache,
        policy: PolicyBook,
        spend: SpendBook,
        agent_keys: AgentKeyBook,
        committed: CommittedBatches,
        batch_max: int,
        queue_max: int,
        recon: ReconciliationBook,
        webhooks: WebhookBook | None = None,
        receives: ReceiveCache | None = None,
        channel_ops: ChannelOpCache | None = None,
        rebalances: RebalanceBook | None = None,
        jit_sales: JitCache | None = None,
        payees: PayeeCache | None = None,
        lsp_orders: LspOrderCache | None = None,
    ) -> None:
        self._lsp_orders = lsp_orders
        self._rebalances = rebalances
        self._payees = payees
        self._receives = receives
        self._channel_ops = channel_ops
        self._jit_sales = jit_sales
        self._recon = recon
        self._webhooks = webhooks or WebhookBook()
        assert batch_max >= 1 and queue_max >= 1
        self._store = store
        self._planner = planner
        self._cache = cache
        self._policy = policy
        self._spend = spend
        self._agent_keys = agent_keys
        self._committed = committed
        self._batch_max = batch_max
        self._queue: asyncio.Queue[QueuedCommand] = asyncio.Queue(maxsize=queue_max)
        self.batches = 0
        self.commands = 0

    async def execute(self, envelope: CommandEnvelope) -> Reply:
        """Queue a command and wait until it is committed (or refused)."""
        item = QueuedCommand(envelope=envelope, future=asyncio.get_running_loop().create_future())
        # Decoding the invoice and fingerprinting happen here, as each command arrives, and
        # not in the writer loop: they depend on no state, and so they run while the writer
        # waits on PostgreSQL instead of lengthening every batch.
        prepare(item)
        await self._queue.put(item)
        assert item.future is not None
        return await item.future

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                replies = await self.process(batch)
            except Exception:
                # A bug must not stop the writer loop: this batch was not committed (the spend
                # journal rolled back), its callers get a coded error, the next batch runs.
                log.exception("batch_crashed", commands=len(batch))
                self._forget(batch)
                crashed = errors.CorridorError(
                    "internal error; not committed", code="internal_error"
                )
                replies = [rejected(crashed)] * len(batch)
            for item, reply in zip(batch, replies, strict=True):
                if item.future is not None and not item.future.done():
                    item.future.set_result(reply)

    async def process(self, items: Sequence[QueuedCommand]) -> list[Reply]:
        self.batches += 1
        self.commands += len(items)
        try:
            try:
                return await self._process_current(items)
            except (ConcurrencyConflict, ClaimConflict):
                # Usually a submit assumed new whose intent exists (a retry of an intent no
                # longer cached): once more with every stream read from the log.
                self._forget(items)
                return await self._process_current(items)
        except (ConcurrencyConflict, ClaimConflict, StaleView):
            self._forget(items)
            return [await self._process_alone(item) for item in items]
        except Exception as exc:
            self._forget(items)
            if is_transient(exc):
                log.warning("append_unavailable", error=type(exc).__name__)
                return [rejected(errors.Unavailable("event store unavailable; retry"))] * len(items)
            # One command's data or a bug it trips: only that command is refused (ADR 0070).
            return await isolation.one_by_one(items, self._process_alone, exc)

    async def _process_current(self, items: Sequence[QueuedCommand]) -> list[Reply]:
        """``_process_batch``, judged again after catching up while its fences fail."""
        for _ in range(STALE_RETRIES_MAX - 1):
            try:
                return await self._process_batch(items)
            except StaleView as exc:
                self._stale(exc)
        return await self._process_batch(items)

    def _stale(self, exc: StaleView) -> None:
        log.info("view_stale", what=type(exc).__name__)
        if isinstance(exc, StalePolicy):
            self._policy.stale = True
        else:
            self._spend.sync.stale = True

    async def _process_alone(self, item: QueuedCommand) -> Reply:
        for _ in range(CONFLICT_RETRIES_MAX):
            try:
                return (await self._process_batch([item]))[0]
            except StaleView as exc:
                self._stale(exc)
            except (ConcurrencyConflict, ClaimConflict):
                self._forget([item])
            except Exception as exc:
                self._forget([item])
                if is_transient(exc):
                    return rejected(errors.Unavailable("event store unavailable; retry"))
                return rejected(isolation.refusal(exc))
        return rejected(errors.Unavailable("too much contention on this intent; retry"))

    async def _process_batch(self, items: Sequence[QueuedCommand]) -> list[Reply]:
        for item in items:
            if not item.prepared:
                prepare(item)
        # A policy command is judged against the stream as the log has it: another engine may
        # have recorded the proposal it approves (rare enough for a read each time).
        if self._policy.stale or any(i.stream_id == POLICY_STREAM for i in items):
            await self._policy.load()
        if any(i.stream_id == AGENT_KEYS_STREAM for i in items):
            # Key changes are rare and another engine may have made one a moment ago: decide
            # on the log's latest (one indexed query when nothing changed).
            await self._agent_keys.refresh(self._store)
        recon_nodes = [
            i.stream_id.removeprefix(RECON) for i in items if i.stream_id.startswith(RECON)
        ]
        if recon_nodes:
            await self._recon.refresh(self._store, recon_nodes)
        hooks = [i.stream_id.removeprefix(HOOK) for i in items if i.stream_id.startswith(HOOK)]
        if hooks:
            # Every endpoint, not only these: the per-owner limit counts the owner's others.
            await self._webhooks.catch_up(self._store)
        await self._cache.load(
            [
                i.stream_id
                for i in items
                if i.error is None
                and i.stream_id not in (POLICY_STREAM, AGENT_KEYS_STREAM)
                and not i.stream_id.startswith((RECON, HOOK, RCV, CHOP, JIT, PAYEE, LSP, *RBL))
                and not assumed_new(i)
            ]
        )
        if self._receives is not None:  # receive intents (ADR 0220): always read
            await self._receives.load(
                [i.stream_id for i in items if i.error is None and i.stream_id.startswith(RCV)]
            )
        if self._channel_ops is not None:  # channel operations (ADR 0234): always read
            ops = [i.stream_id for i in items if i.error is None and i.stream_id.startswith(CHOP)]
            for op_id in ops:
                # Read from the log, never the cache: another engine may have recorded the
                # broadcast a report follows, and a refusal appends nothing whose stream
                # version would catch the stale state (ADR 0283).
                self._channel_ops.forget(op_id)
            await self._channel_ops.load(ops)
        if self._rebalances is not None:  # rebalances and their budgets (ADR 0244): read
            await self._rebalances.load(items)
            if self._channel_ops is not None:  # and the budgets channel fees use (ADR 0285)
                await load_channel_budgets(self._rebalances, self._channel_ops, items)
        if self._jit_sales is not None:  # JIT channel sales (ADR 0261): always read
            await self._jit_sales.load(
                [i.stream_id for i in items if i.error is None and i.stream_id.startswith(JIT)]
            )
        if self._payees is not None:  # payees (ADR 0270): always read
            await self._payees.load(
                [i.stream_id for i in items if i.error is None and i.stream_id.startswith(PAYEE)]
                + named_payees(items)  # submits naming a payee (ADR 0272)
            )
        if self._lsp_orders is not None:  # LSP orders (ADR 0252): always read
            await self._lsp_orders.load_for(items)
        await self._spend.catch_up_if((i.stream_id, self._cache.get(i.stream_id)) for i in items)
        self._spend.prune()
        self._spend.begin()
        try:
            plan = self._planner.plan(items)
            first_position = None
            if plan.events or plan.claims:
                with self._committed.writing():
                    first_position = await self._store.append(
                        plan.events, plan.claims, self._fence(plan)
                    )
        except BaseException:
            self._spend.rollback()  # nothing of this batch was committed
            raise
        self._spend.commit()
        if plan.agent_keys is not None:
            self._agent_keys.adopt(plan.agent_keys.state)
        for ledger in plan.ledgers.values():
            self._recon.adopt(ledger)
        for endpoint in plan.webhooks.values():
            self._webhooks.adopt(endpoint)
        if first_position is not None:
            self._spend.appended(first_position, len(plan.events), plan.spend_callers)
        for stream_id, state in plan.states.items():
            self._cache.remember(stream_id, state)
        for stream_id, receive in plan.receives.items():
            assert self._receives is not None
            self._receives.remember(stream_id, receive)
        for stream_id, op in plan.channel_ops.items():
            assert self._channel_ops is not None
            self._channel_ops.remember(stream_id, op)
        if self._rebalances is not None:
            self._rebalances.adopt(plan)
        for stream_id, sale in plan.jit_sales.items():
            assert self._jit_sales is not None
            self._jit_sales.remember(stream_id, sale)
        for stream_id, payee in plan.payees.items():
            assert self._payees is not None
            self._payees.remember(stream_id, payee)
        for stream_id, order in plan.lsp_orders.items():
            assert self._lsp_orders is not None
            self._lsp_orders.remember(stream_id, order)
        if plan.policy_changed:
            self._policy.adopt(plan.policy_state)
        if first_position is not None and plan.events:
            self._committed.publish(
                CommittedBatch(Writer.COMMANDS, first_position, plan.events, plan.states)
            )
        return plan.replies

    def _fence(self, plan: BatchPlan) -> AppendFence:
        callers, known = self._spend.fence(plan.spend_callers)
        return AppendFence(
            callers=callers,
            known_positions=known,
            policy_stream=POLICY_STREAM if plan.judged_submits else None,
            policy_version=self._policy.version,
        )

    def _forget(self, items: Sequence[QueuedCommand]) -> None:
        for item in items:
            item.reload = True
            self._cache.forget(item.stream_id)
            if self._receives is not None:
                self._receives.forget(item.stream_id)
            if self._channel_ops is not None:
                self._channel_ops.forget(item.stream_id)
            if self._rebalances is not None:
                self._rebalances.forget(item.stream_id)
            if self._jit_sales is not None:
                self._jit_sales.forget(item.stream_id)
            if self._payees is not None:
                self._payees.forget(item.stream_id)
                for payee_id in named_payees([item]):  # its marker may have lost a race
                    self._payees.forget(payee_id)
            if self._lsp_orders is not None:
                self._lsp_orders.forget(item.stream_id)
            if item.stream_id == POLICY_STREAM:
                self._policy.stale = True
            if item.stream_id == AGENT_KEYS_STREAM:
                self._agent_keys.stale = True
