"""The command processor: load state, ``decide``, append, reply. With group commit.

Commands from every entry point go through one bounded queue. A single writer loop takes
whatever is queued (up to ``batch_max``), decides each command against the state left by the
previous one, and appends all resulting events in one transaction. Replies are sent only after
that commit. A conflicting writer elsewhere (another engine instance) makes the append fail as a
whole; then each command is retried on its own against fresh state. Spend limits and the policy
in force are judged against this engine's view of the log; the append carries fences that
fail it when another engine moved either since, and the batch is judged again after catching
up (ADR 0073).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import structlog

from schemas import commands as cmd
from schemas import errors
from schemas.agent_key_messages import AgentKeyCommand, AgentKeyCommandAccepted
from schemas.events import EventData, IntentRejected, InvoiceFacts
from schemas.policy_document import WINDOW_S_MAX
from schemas.policy_messages import ApprovePolicy, PolicyCommand, PolicyProposed, ProposePolicy
from schemas.records import EventMetadata
from schemas.replies import (
    CommandAccepted,
    CommandRejected,
    PaymentIntentStatus,
    PaymentIntentView,
    PolicyCommandAccepted,
    PolicyView,
)
from services.domain.agent_keys import AGENT_KEYS_STREAM
from services.domain.agent_keys.limits import check_key_limits
from services.domain.intent import DecisionContext, PaymentIntent, decide, evolve, fold
from services.domain.intent.access import may_read
from services.domain.policy import (
    Policy,
    PolicyDocumentAggregate,
    PolicyEngine,
    decide_policy,
    evolve_policy,
    fold_policy,
)
from services.domain.policy.spend_tracker import SpendTracker, by_agent_key
from services.domain.principal import Principal, claimed_identity
from services.domain.routing import Router
from services.engine import isolation
from services.engine.agent_key_book import AgentKeyBook
from services.engine.agent_key_planning import AGENT_KEY_COMMANDS, plan_agent_key_command
from services.engine.clock import Clock, IdSource
from services.engine.event_codec import POLICY_STREAM, to_domain, to_new_events, to_recorded
from services.engine.ids import fingerprint, intent_id_for
from services.engine.rejection_budget import RejectionBudget
from services.engine.spend_sync import SPEND_EVENT_TYPES, SpendSync
from services.engine.views import accepted, policy_view, why_unpaid
from services.eventstore.port import (
    AppendFence,
    ClaimConflict,
    ConcurrencyConflict,
    EventStore,
    IdempotencyClaim,
    NewEvent,
    StalePolicy,
    StaleView,
    StoredEvent,
)
from services.failures import is_transient
from services.identity.agent_keys import AgentKey, AgentKeyLookup
from services.lightning.bolt11 import InvoiceDecodeError, decode_invoice
from services.signing.orders import sign_orders
from services.signing.port import Signer

log = structlog.get_logger("corridor.processor")

Reply = CommandAccepted | PolicyCommandAccepted | AgentKeyCommandAccepted | CommandRejected

_THROTTLED = errors.RateLimited(
    "too many of this caller's submits were rejected by policy lately; retry in a minute",
    field="caller",
)
# A command that keeps losing optimistic-concurrency races gives up after this many tries.
CONFLICT_RETRIES_MAX = 5
# A batch judged on a view another engine moved is judged again after catching up; while other
# engines keep moving the same callers it may lose again, and after this many it goes on one
# command at a time (``CONFLICT_RETRIES_MAX`` each).
STALE_RETRIES_MAX = 4


@dataclass(frozen=True, slots=True)
class CommandEnvelope:
    command: cmd.Command | PolicyCommand | AgentKeyCommand
    correlation_id: str | None = None
    causation_id: str | None = None
    # Who sent it, as the intake authenticated it (ADR 0061); ``None`` for the engine's own
    # commands (deadlines). The log's ``actor``.
    principal: Principal | None = None
    # The agent key whose signature the intake verified (ADR 0066); its limits and sponsor
    # are judged again, from the current keys, when the command is decided (ADR 0068).
    agent_key: AgentKey | None = None

    def __post_init__(self) -> None:
        if self.principal is not None:
            claimed = claimed_identity(self.command)
            assert claimed is not None and claimed[1] == self.principal.id, (
                "the intake binds every command to the identity its payload names"
            )


@dataclass(slots=True)
class _Item:
    envelope: CommandEnvelope
    future: asyncio.Future[Reply] | None = None
    stream_id: str = ""
    request_fingerprint: str | None = None
    invoice: InvoiceFacts | None = None
    error: errors.CorridorError | None = None
    prepared: bool = False
    # Set after a conflict: read this item's stream from the log even if it is a submit.
    reload: bool = False


def _observe(hook: Callable[..., None], *args: object) -> None:
    """Tell an observer about a committed batch. The batch is committed: a failing observer
    must not turn that into an error reply."""
    try:
        hook(*args)
    except Exception:
        log.exception("commit_observer_failed", hook=getattr(hook, "__name__", "?"))


def _status_of(intent_id: str, state: PaymentIntent) -> PaymentIntentStatus:
    return PaymentIntentStatus(
        intent_id=intent_id,
        state=str(state.status),
        attempt=state.attempt,
        stream_version=state.version,
    )


def _assumed_new(item: _Item) -> bool:
    """A submit whose intent this engine has not cached is taken to be new, without reading
    the log: most are, and for the others the append fails on the idempotency claim and the
    stream's version, and the batch is decided again with the stream read (``process``)."""
    # An agent's submit is read all the same: its key's limits are judged only for a new
    # intent, and a retry of one already logged must get its intent, not a limit refusal.
    return (
        isinstance(item.envelope.command, cmd.SubmitPaymentIntent)
        and not item.reload
        and item.envelope.agent_key is None
    )


@dataclass(slots=True)
class _Plan:
    policy_state: PolicyDocumentAggregate | None
    policy_changed: bool = False
    agent_keys: AgentKeyBook | None = None  # a new view, when the batch changed the keys
    replies: list[Reply] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    claims: list[IdempotencyClaim] = field(default_factory=list)
    states: dict[str, PaymentIntent | None] = field(default_factory=dict)
    # Callers whose spend this batch judged or changed: the append fences them (ADR 0073).
    spend_callers: set[str] = field(default_factory=set)
    judged_submits: bool = False
    # Set by an activation inside this batch: the batch's later submits are judged with it.
    activated: Policy | None = None


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
    ) -> None:
        self._store = store
        # Bounds what policy-rejected submits, three events each, cost per caller (ADR 0079).
        self._rejections = RejectionBudget(rejections_per_minute)
        # Signs every work order before it is appended (ADR 0063); ``None``: orders go unsigned
        # and executors refuse them (tests of the engine alone).
        self._signer = signer
        self._clock = clock
        self._ids = ids
        self._policy = policy
        self._router = router
        self._network = network
        self._attempts_max = attempts_max
        self._pay_timeout_s = pay_timeout_s
        self._batch_max = batch_max
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_max)
        # Last known state per stream; ``None`` means "no such stream". Bounded LRU.
        self._cache: OrderedDict[str, PaymentIntent | None] = OrderedDict()
        self._cache_max = cache_max
        # Spend reserved or settled per caller, threaded through every decision so that two
        # intents racing for the last budget are judged one after the other; kept in step
        # with other engines' appends (ADR 0073). It also books agent keys' own windows (ADR
        # 0068) beside the policy's: a key belongs to one agent caller, so the caller's fence
        # covers the key's window too.
        self._sync = SpendSync()
        # The agent keys the log trusts (ADR 0068); the intake verifies signatures against it.
        self.agent_keys = AgentKeyBook()
        # What the writer loop checks an agent submit's key against again: the log's keys, or
        # a fixed set a test hands the bootstrap.
        self.key_lookup: AgentKeyLookup = self.agent_keys
        # The policy document aggregate: one stream, loaded at start, kept current here.
        self._baseline_policy_version = baseline_policy_version
        self._policy_state: PolicyDocumentAggregate | None = None
        self._policy_stale = True
        self._active_policy: Policy | None = None
        self._spend_pruned_at_ms = 0
        self.batches = 0
        self.commands = 0
        # Called after each commit with the new state of every stream it changed.
        self.committed_hooks: list[Callable[[dict[str, PaymentIntent | None]], None]] = []
        # Called after each commit with the batch's first position and its events, in order
        # (the outbox relay takes them from here instead of reading them back).
        self.appended_hooks: list[Callable[[int, Sequence[NewEvent]], None]] = []
        self.appending = False  # an append is on its way to the database

    async def execute(self, envelope: CommandEnvelope) -> Reply:
        """Queue a command and wait until it is committed (or refused)."""
        item = _Item(envelope=envelope, future=asyncio.get_running_loop().create_future())
        # Decoding the invoice and fingerprinting happen here, as each command arrives, and
        # not in the writer loop: they depend on no state, and so they run while the writer
        # waits on PostgreSQL instead of lengthening every batch.
        self._prepare(item)
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
                replies = [_rejected(crashed)] * len(batch)
            for item, reply in zip(batch, replies, strict=True):
                if item.future is not None and not item.future.done():
                    item.future.set_result(reply)

    async def process(self, items: Sequence[_Item]) -> list[Reply]:
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
                return [_rejected(errors.Unavailable("event store unavailable; retry"))] * len(
                    items
                )
            # One command's data or a bug it trips: only that command is refused (ADR 0070).
            return await isolation.one_by_one(items, self._process_alone, exc)

    async def _process_current(self, items: Sequence[_Item]) -> list[Reply]:
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
            self._policy_stale = True
        else:
            self._sync.stale = True

    async def _process_alone(self, item: _Item) -> Reply:
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
                    return _rejected(errors.Unavailable("event store unavailable; retry"))
                return _rejected(isolation.refusal(exc))
        return _rejected(errors.Unavailable("too much contention on this intent; retry"))

    async def _process_batch(self, items: Sequence[_Item]) -> list[Reply]:
        for item in items:
            if not item.prepared:
                self._prepare(item)
        # A policy command is judged against the stream as the log has it: another engine may
        # have recorded the proposal it approves (rare enough for a read each time).
        if self._policy_stale or any(i.stream_id == POLICY_STREAM for i in items):
            await self.load_policy_state()
        if any(i.stream_id == AGENT_KEYS_STREAM for i in items):
            # Key changes are rare and another engine may have made one a moment ago: decide
            # on the log's latest (one indexed query when nothing changed).
            await self.agent_keys.refresh(self._store)
        await self._load(
            [
                i.stream_id
                for i in items
                if i.error is None
                and i.stream_id not in (POLICY_STREAM, AGENT_KEYS_STREAM)
                and not _assumed_new(i)
            ]
        )
        if self._sync.stale or self._unfolded(items):
            await self._sync.catch_up(self._store)
        self._prune_spend()
        tracker, key_tracker = self._sync.tracker, self._sync.key_tracker
        tracker.begin()
        key_tracker.begin()
        try:
            plan = self._plan(items)
            first_position = None
            if plan.events or plan.claims:
                self.appending = True
                try:
                    first_position = await self._store.append(
                        plan.events, plan.claims, self._fence(plan)
                    )
                finally:
                    self.appending = False
        except BaseException:
            tracker.rollback()  # nothing of this batch was committed
            key_tracker.rollback()
            raise
        tracker.commit()
        key_tracker.commit()
        if plan.agent_keys is not None:
            self.agent_keys.adopt(plan.agent_keys.state)
        if first_position is not None:
            self._sync.appended(first_position, len(plan.events), plan.spend_callers)
        for stream_id, state in plan.states.items():
            self._remember(stream_id, state)
        if first_position is not None and plan.events:
            for appended in self.appended_hooks:
                _observe(appended, first_position, plan.events)
        if plan.policy_changed:
            self._adopt_policy(plan.policy_state)
        if plan.states:
            for hook in self.committed_hooks:
                _observe(hook, plan.states)
        return plan.replies

    def _unfolded(self, items: Sequence[_Item]) -> bool:
        """Whether the batch holds an open intent whose spend this engine never folded:
        another engine received it after this one's view (ADR 0073). Its reservation must
        be folded before an outcome settles or releases it."""
        for item in items:
            state = self._cache.get(item.stream_id)
            if (
                state is not None
                and not state.is_terminal
                and not self._sync.tracker.knows(item.stream_id)
            ):
                return True
        return False

    def _fence(self, plan: _Plan) -> AppendFence:
        callers, known = self._sync.fence(plan.spend_callers)
        judged = plan.judged_submits
        return AppendFence(
            callers=callers,
            known_positions=known,
            policy_stream=POLICY_STREAM if judged else None,
            policy_version=self._policy_state.version if self._policy_state else 0,
        )

    def note_append(self, first_position: int, events: Sequence[NewEvent]) -> None:
        """Another writer of this process (the checkpointer) appended: those positions hold
        no spend, so the view need not catch up over them."""
        self._sync.appended(first_position, len(events))

    def _prepare(self, item: _Item) -> None:
        item.prepared = True
        item.error = None
        command = item.envelope.command
        if isinstance(command, ProposePolicy | ApprovePolicy):
            item.stream_id = POLICY_STREAM
            return
        if isinstance(command, AGENT_KEY_COMMANDS):
            item.stream_id = AGENT_KEYS_STREAM
            return
        if not isinstance(command, cmd.SubmitPaymentIntent):
            item.stream_id = command.intent_id
            return
        item.stream_id = intent_id_for(command.caller.id, command.idempotency_key)
        item.request_fingerprint = fingerprint(command)
        if command.payment_request is not None and item.invoice is None:
            try:
                decoded = decode_invoice(command.payment_request)
            except InvoiceDecodeError as exc:
                item.error = errors.InvalidInvoice(
                    f"payment_request is not a valid BOLT 11 invoice: {exc.message}",
                    field="payment_request",
                )
                return
            item.invoice = InvoiceFacts(
                payment_hash=decoded.payment_hash,
                payee=decoded.destination,
                network=decoded.network,
                amount_msat=decoded.amount_msat,
                created_at_s=decoded.created_at_s,
                expires_at_s=decoded.created_at_s + decoded.expiry_s,
            )

    async def _load(self, stream_ids: Sequence[str]) -> None:
        missing = [s for s in dict.fromkeys(stream_ids) if s not in self._cache]
        if not missing:
            return
        loaded = await self._store.read_streams(missing)
        for stream_id in missing:
            history = loaded.get(stream_id, [])
            self._remember(stream_id, fold(to_domain(e) for e in history))

    def _plan(self, items: Sequence[_Item]) -> _Plan:
        now_ms = self._clock.now_ms()
        plan = _Plan(policy_state=self._policy_state)
        router = self._router()
        tracker = self._sync.tracker
        for item in items:
            base_policy = plan.activated or self._active_policy or self._policy()
            policy = (
                base_policy.with_spend(tracker)
                if isinstance(base_policy, PolicyEngine)
                else base_policy
            )
            if item.error is not None:
                plan.replies.append(_rejected(item.error))
                continue
            command = item.envelope.command
            if isinstance(command, ProposePolicy | ApprovePolicy):
                plan.replies.append(self._plan_policy(plan, item, command, now_ms))
                continue
            if isinstance(command, AGENT_KEY_COMMANDS):
                book = plan.agent_keys or self.agent_keys
                reply, plan.agent_keys, events = plan_agent_key_command(
                    book, command, item.envelope, now_ms=now_ms, new_id=self._ids.new_id,
                    actor=_actor(item.envelope),
                )  # fmt: skip
                plan.events += events
                plan.replies.append(reply)
                continue
            state = plan.states.get(item.stream_id, self._cache.get(item.stream_id))
            submit = command if isinstance(command, cmd.SubmitPaymentIntent) else None
            if submit and state is None and not self._rejections.allows(submit.caller.id, now_ms):
                plan.replies.append(_rejected(_THROTTLED))
                continue
            try:
                key = self._agent_key(plan, item) if state is None else None
            except errors.CorridorError as exc:
                plan.replies.append(_rejected(exc))
                continue
            ctx = DecisionContext(
                now_ms=now_ms,
                policy=policy,
                router=router,
                network=self._network,
                intent_id=item.stream_id,
                request_fingerprint=item.request_fingerprint,
                invoice=item.invoice,
                attempts_max=self._attempts_max,
                pay_timeout_s=self._pay_timeout_s,
                agent_key_id=key.key_id if key else None,
                on_behalf_of=key.sponsor_id if key else None,
            )
            try:
                if key is not None and isinstance(command, cmd.SubmitPaymentIntent):
                    check_key_limits(
                        key.key_id, key.limits, amount_msat=command.amount_msat,
                        budget_msat=command.amount_msat + command.max_fee_msat,
                        spend=self._sync.key_tracker, now_ms=now_ms,
                    )  # fmt: skip
                new_events = decide(state, command, ctx)
            except errors.CorridorError as exc:
                plan.replies.append(_rejected(exc))
                continue
            if not new_events:
                assert state is not None
                plan.replies.append(accepted(state, duplicate=True))
                continue
            if submit and any(
                isinstance(e, IntentRejected) and e.by == "policy" for e in new_events
            ):
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
            tracker.apply(item.stream_id, new_events, at_ms=now_ms)
            self._sync.key_tracker.apply(item.stream_id, new_events, at_ms=now_ms)
            if any(type(e).__name__ in SPEND_EVENT_TYPES for e in new_events):
                plan.spend_callers.add(new_state.caller.id)
                plan.judged_submits |= isinstance(command, cmd.SubmitPaymentIntent)
            metadata = EventMetadata(
                correlation_id=item.envelope.correlation_id or item.stream_id,
                causation_id=item.envelope.causation_id or self._ids.new_id(),
                actor=_actor(item.envelope),
                policy_version=new_state.policy_version,
                owner=new_state.caller.id,  # the relay's subject token (ADR 0067)
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
        return plan

    def _plan_policy(self, plan: _Plan, item: _Item, command: PolicyCommand, now_ms: int) -> Reply:
        state = plan.policy_state
        try:
            new_events = decide_policy(
                state, command, now_ms=now_ms, baseline_version=self._baseline_policy_version
            )
        except errors.CorridorError as exc:
            return _rejected(exc)
        if not new_events:
            return PolicyCommandAccepted(
                policy_version=command.policy_version,
                active_version=state.active_version if state else None,
                duplicate=True,
            )
        new_state = state
        for event in new_events:
            new_state = evolve_policy(new_state, event)
        assert new_state is not None
        metadata = EventMetadata(
            correlation_id=item.envelope.correlation_id or POLICY_STREAM,
            causation_id=item.envelope.causation_id or self._ids.new_id(),
            actor=_actor(item.envelope),
            policy_version=new_state.active_version,
        )
        plan.events += to_new_events(
            POLICY_STREAM, (state.version if state else 0) + 1, new_events, metadata, now_ms
        )
        plan.policy_state = new_state
        plan.policy_changed = True
        if new_state.active is not None and new_state.active_version != (
            state.active_version if state else None
        ):
            plan.activated = PolicyEngine(new_state.active)
        return PolicyCommandAccepted(
            policy_version=command.policy_version, active_version=new_state.active_version
        )

    def _agent_key(self, plan: _Plan, item: _Item) -> AgentKey | None:
        """The current state of the key that signed a new agent submit (``None`` for others):
        revoked since the intake checked it, the command is refused all the same."""
        signed = item.envelope.agent_key
        if signed is None:
            return None
        lookup = plan.agent_keys if plan.agent_keys is not None else self.key_lookup
        key = lookup.find(signed.key_id)
        if key is None or key.revoked:
            raise errors.KeyRevoked(
                f"key {signed.key_id} of agent {signed.agent_id} is revoked",
                field="Corridor-Agent-Key-Id",
            )
        return key

    async def load_policy_state(self) -> None:
        history = await self._store.read_stream(POLICY_STREAM)
        events = [_policy_event(e) for e in history]
        self._adopt_policy(fold_policy(events) if events else None)  # type: ignore[arg-type]
        self._policy_stale = False

    def _adopt_policy(self, state: PolicyDocumentAggregate | None) -> None:
        previous = self._policy_state.active_version if self._policy_state else None
        self._policy_state = state
        if state is not None and state.active is not None and state.active_version != previous:
            self._active_policy = PolicyEngine(state.active)
            log.info("policy_activated", policy_version=state.active_version)
        elif state is None or state.active is None:
            self._active_policy = None

    async def current_policy_view(self) -> PolicyView | CommandRejected:
        """``policy_view`` as the log has it: another engine may have recorded a proposal or
        an activation since this one loaded the stream (ADR 0074). Then the view is read
        from the log, and the writer loop reloads before it judges again."""
        known = self._policy_state.version if self._policy_state else 0
        if await self._store.stream_version(POLICY_STREAM) == known:
            return self.policy_view()
        self._policy_stale = True
        history = await self._store.read_stream(POLICY_STREAM)
        state = fold_policy([_policy_event(e) for e in history])  # type: ignore[misc]
        if state is None or state.active is None:
            return self.policy_view()
        return policy_view(state.active, state)

    def policy_view(self) -> PolicyView | CommandRejected:
        """The document this engine judges intents by, and proposals awaiting approval."""
        active = self._active_policy or self._policy()
        if not isinstance(active, PolicyEngine):
            return _rejected(
                errors.NotFound(
                    "this engine judges with a built-in policy, not a policy document",
                    code="no_policy_document",
                )
            )
        return policy_view(active.document, self._policy_state)

    @property
    def active_policy_version(self) -> int | None:
        active = self._active_policy or self._policy()
        return getattr(active, "version", None)

    def _prune_spend(self) -> None:
        # Windows never exceed WINDOW_S_MAX whatever the active document says, so pruning to
        # that horizon cannot forget spend a future policy version might still count.
        now_ms = self._clock.now_ms()
        if now_ms - self._spend_pruned_at_ms >= 60_000:
            self._spend_pruned_at_ms = now_ms
            self._sync.tracker.prune(now_ms=now_ms, horizon_ms=WINDOW_S_MAX * 1000)
            self._sync.key_tracker.prune(now_ms=now_ms, horizon_ms=WINDOW_S_MAX * 1000)

    async def load_spend(self) -> int:
        """Rebuild the spend book from the log's recent events; returns events folded."""
        horizon_ms = self._clock.now_ms() - WINDOW_S_MAX * 1000
        tracker = SpendTracker()
        key_tracker = SpendTracker(account=by_agent_key)
        folded = 0

        def fold_spend(stored: StoredEvent) -> None:
            nonlocal folded
            event = [to_domain(stored)]
            tracker.apply(stored.stream_id, event, at_ms=stored.recorded_at_ms)
            key_tracker.apply(stored.stream_id, event, at_ms=stored.recorded_at_ms)
            folded += 1

        # One snapshot: every spend event at or below ``head`` is folded.
        head = await self._store.scan_recent(
            types=SPEND_EVENT_TYPES, recorded_since_ms=horizon_ms, visit=fold_spend
        )
        self._sync.reset(tracker, key_tracker, seen_through=head)
        return folded

    def _remember(self, stream_id: str, state: PaymentIntent | None) -> None:
        self._cache[stream_id] = state
        self._cache.move_to_end(stream_id)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    def _forget(self, items: Sequence[_Item]) -> None:
        for item in items:
            item.reload = True
            self._cache.pop(item.stream_id, None)
            if item.stream_id == POLICY_STREAM:
                self._policy_stale = True
            if item.stream_id == AGENT_KEYS_STREAM:
                self.agent_keys.stale = True

    async def status(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentStatus | CommandRejected:
        """From the committed-state cache when the log agrees, else from the log.

        A cached ``None`` ("no such stream" when the writer loop last looked) is not trusted:
        the stream may have been committed since, by this engine or another one, so the log
        answers. Nor is a cached open state whose version the log has passed: another engine
        moved the intent (ADR 0074), and an executor asking whether to send must not hear of
        an attempt that is no longer current. This path never writes the cache, so it cannot
        race the writer loop. ``reader`` ``None`` is the engine itself; anyone else sees only
        what ``may_read`` allows, and an intent it may not read is ``not_found``, as if it did
        not exist.
        """
        cached = self.cached_status(intent_id, reader=reader)
        if cached is not None:
            return cached
        state = self._cache.get(intent_id)
        if (
            state is not None
            and _readable(reader, state, history=False)
            and await self._store.stream_version(intent_id) == state.version
        ):
            return _status_of(intent_id, state)
        history = await self._store.read_stream(intent_id)
        state = fold(to_domain(e) for e in history)
        if state is None or not _readable(reader, state, history=False):
            return _not_found(intent_id)
        return _status_of(intent_id, state)

    def cached_status(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentStatus | None:
        """The status from the committed-state cache if it is final, or ``None`` if only the
        log can tell (another engine may have moved an open intent since, ADR 0074; or
        ``reader`` may not read it: ``status`` then says so)."""
        state = self._cache.get(intent_id)
        if state is None or not state.is_terminal or not _readable(reader, state, history=False):
            return None
        return _status_of(intent_id, state)

    async def view(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentView | CommandRejected:
        """The state and full history; ``reader`` as in ``status``."""
        history = await self._store.read_stream(intent_id)
        if not history:
            return _not_found(intent_id)
        state = fold(to_domain(e) for e in history)
        assert state is not None
        if not _readable(reader, state, history=True):
            return _not_found(intent_id)
        reason, failures = why_unpaid(state)
        return PaymentIntentView(
            intent_id=intent_id,
            state=str(state.status),
            stream_version=state.version,
            events=[to_recorded(e) for e in history],
            reason=reason,
            failures=failures,
        )


def _actor(envelope: CommandEnvelope) -> str:
    """The authenticated sender; for an envelope built inside the engine (deadlines, tests),
    the sender its command names, in the roles the subjects give them."""
    if envelope.principal is not None:
        return envelope.principal.actor
    claimed = claimed_identity(envelope.command)
    if claimed is None:
        return "corridor"
    field, ident = claimed
    role = {"caller.id": "caller", "node": "executor"}.get(field, "operator")
    return f"{role}:{ident}"


def _policy_event(stored: StoredEvent) -> EventData:
    event = to_domain(stored)
    if isinstance(event, PolicyProposed) and event.proposed_at_ms is None:
        # Logged before proposals carried their time: the time it was recorded is that time.
        return msgspec.structs.replace(event, proposed_at_ms=stored.recorded_at_ms)
    return event


def _readable(reader: Principal | None, state: PaymentIntent, *, history: bool) -> bool:
    return reader is None or may_read(reader, state, history=history)


def _not_found(intent_id: str) -> CommandRejected:
    # The same answer whether the intent does not exist or is not the reader's: intent ids are
    # derived from (caller id, idempotency key), so a different answer would let anyone probe
    # for another caller's intents.
    return _rejected(errors.NotFound(f"no payment intent {intent_id}", field="intent_id"))


def _rejected(error: errors.CorridorError) -> CommandRejected:
    return CommandRejected(error=error.detail())
