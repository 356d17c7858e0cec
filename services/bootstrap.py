"""The composition root: build the whole engine from settings in one call.

Tests and the simulation swap the clock, ids, policy or router here; nothing else in the code
base constructs infrastructure objects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.bus import subjects
from services.bus.jetstream import connect, ensure_streams
from services.bus.nats_adapter import NatsBus
from services.bus.port import Bus, Message
from services.bus.reconnects import Reconnects
from services.bus.stream_retention import stream_limits
from services.bus.stream_specs import declare_streams
from services.domain.policy import Policy, PolicyEngine
from services.domain.rebalance import RebalanceRules
from services.domain.routing import CorridorTable, OrderedRouter, RouteCandidate, Router
from services.engine.agent_key_book import REFRESH_INTERVAL_S
from services.engine.channel_op_planning import channel_policy
from services.engine.checkpoints import CHECKPOINT_EVERY_EVENTS, CHECKPOINT_EVERY_S, Checkpointer
from services.engine.claim_pruner import ClaimPruner
from services.engine.clock import Clock, IdSource, RandomIds, SystemClock
from services.engine.committed import CommittedBatches
from services.engine.dead_letters import DeadLetterDesk
from services.engine.deadlines import DeadlineScheduler
from services.engine.jit_planning import jit_policy_from
from services.engine.our_nodes import SNAPSHOTS_PENDING_BYTES_MAX, SNAPSHOTS_PENDING_MAX, OurNodes
from services.engine.processor import CommandProcessor
from services.engine.reconciliation_cursor import ReconciliationCursors
from services.engine.sweeper import Sweeper
from services.eventstore.port import EventStore
from services.eventstore.postgres import PostgresEventStore
from services.executor.health import (
    HEALTH_PENDING_BYTES_MAX,
    HEALTH_PENDING_MSGS_MAX,
    HealthBoard,
    HealthListener,
)
from services.identity.agent_keys import AgentKeyLookup
from services.identity.lookup import CredentialLookup, lookup_from_settings
from services.intake.api import ApiService
from services.intake.identity import Authenticator
from services.intake.stream_consumer import CommandStreamConsumer
from services.policy.loader import load_default_policy, load_policy
from services.relay.outbox import OutboxRelay
from services.settings import Settings
from services.signing.file_keys import keys_dir, load_or_create_signer
from services.signing.port import Signer
from services.webhooks.running import engine_book

log = structlog.get_logger("corridor.engine")


def corridor_table(
    corridors: dict[str, list[str]], *, keysend_unsupported: Iterable[str] = ()
) -> CorridorTable:
    no_keysend = set(keysend_unsupported)
    table = {}
    for name, candidates in corridors.items():
        parsed = []
        for entry in candidates:
            region, _, node = entry.partition("/")
            node = node or f"{region}-lnd"
            parsed.append(RouteCandidate(region=region, node=node, keysend=node not in no_keysend))
        table[name] = tuple(parsed)
    return CorridorTable(corridors=table)


@dataclass
class Engine:
    settings: Settings
    store: EventStore
    # None when the engine runs over a bus that is not a nats-server (``bootstrap(bus=)``).
    nc: Client | None
    js: JetStreamContext | None
    # The bus port over ``nc`` (ADR 0092, 0098); ``nc`` and ``js`` serve what has not moved.
    bus: Bus
    processor: CommandProcessor
    # This process's commits, from every writer to every listener (ADR 0095).
    committed: CommittedBatches
    api: ApiService
    commands: CommandStreamConsumer
    relay: OutboxRelay
    deadlines: DeadlineScheduler
    health: HealthBoard
    health_listener: HealthListener
    # Signs the log's chain head (ADR 0065).
    checkpoints: Checkpointer | None = None
    # Prunes old idempotency claims (ADR 0079).
    claims: ClaimPruner | None = None
    # Answers `corridor dlq list|replay|drop` (ADR 0080).
    dead_letters: DeadLetterDesk | None = None
    # Re-issues quiet work orders and escalates intents that outlived their bound (ADR 0075).
    sweeper: Sweeper | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, *, relay: bool = True, intake: bool = True) -> None:
        await self.processor.load_policy_state()
        await self.processor.agent_keys.load(self.store)
        await self.processor.recon.load(self.store)
        await self.processor.webhooks.catch_up(self.store)
        await self.processor.load_spend()
        self._spawn(self._follow_agent_keys, "agent-keys")
        self._spawn(self.processor.run, "processor")
        await self.deadlines.load(self.store)
        self._spawn(self.deadlines.run, "deadlines")
        if self.checkpoints is not None:
            self._spawn(self.checkpoints.run, "checkpoints")
        if self.claims is not None:
            self._spawn(self.claims.run, "claim-pruner")
        await self.bus.subscribe(
            subjects.HEALTH_WILDCARD,
            self._on_health,
            pending_msgs_max=HEALTH_PENDING_MSGS_MAX,
            pending_bytes_max=HEALTH_PENDING_BYTES_MAX,
        )
        # Each node's pubkey, from its executor's channel snapshots (ADR 0249).
        await self.bus.subscribe(
            subjects.LIQUIDITY_WILDCARD,
            self._on_snapshot,
            pending_msgs_max=SNAPSHOTS_PENDING_MAX,
            pending_bytes_max=SNAPSHOTS_PENDING_BYTES_MAX,
        )
        if intake:
            if self.dead_letters is not None:
                await self.dead_letters.start()
            await self.api.start()
            self._spawn(self.commands.run, "cmd-consumer")
        if relay:
            self._spawn(self.relay.run, "relay")
            if self.sweeper is not None:
                self._spawn(self.sweeper.run, "sweeper")

    async def _follow_agent_keys(self) -> None:
        """Key changes another engine process committed apply here within a second (ADR
        0068); this engine's own apply at commit."""
        while True:
            await asyncio.sleep(REFRESH_INTERVAL_S)
            try:
                await self.processor.agent_keys.refresh(self.store)
            except Exception:
                # The database may be away for a moment: the keys in force stay, and the
                # next round tries again.
                log.warning("agent_keys_refresh_failed", exc_info=True)

    async def _on_health(self, msg: Message) -> None:
        # Checked, counted and (at a bounded rate) logged by the listener (ADR 0062).
        self.health_listener.receive(msg.subject, msg.data)

    async def _on_snapshot(self, msg: Message) -> None:
        self.processor.our_nodes.receive(msg.subject, msg.data)

    def _spawn(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        task = asyncio.create_task(fn(), name=name)
        task.add_done_callback(_crash_log)
        self._tasks.append(task)

    async def stop(self, timeout_s: float = 10.0) -> None:
        self.commands.stop()
        await self.api.stop()
        if self.dead_letters is not None:
            await self.dead_letters.stop()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in stuck:
                log.warning("engine_task_did_not_stop", task=task.get_name())
        # Every publish was awaited already, so a flush and close is enough; drain() can wait
        # out its whole timeout on subscriptions that were just removed.
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.flush(), timeout=timeout_s)
            with contextlib.suppress(Exception):
                await self.nc.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.close(), timeout=timeout_s)


def _crash_log(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("engine_task_crashed", task=task.get_name(), error=repr(task.exception()))


async def bootstrap(
    settings: Settings,
    *,
    nats_url: str | None = None,
    database_url: str | None = None,
    store: EventStore | None = None,
    bus: Bus | None = None,
    clock: Clock | None = None,
    ids: IdSource | None = None,
    policy: Callable[[], Policy] | None = None,
    router: Callable[[], Router] | None = None,
    credentials: CredentialLookup | None = None,
    creds: Path | None = None,
    signer: Signer | None = None,
    agent_keys: AgentKeyLookup | None = None,
    checkpoint_every_events: int = CHECKPOINT_EVERY_EVENTS,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> Engine:
    """``credentials``: the registry identities are checked against (ADR 0061); by default
    the file the settings name, and none (nothing verified) when they name none.

    ``signer``: signs every work order (ADR 0063); by default the engine's key in
    ``<state_dir>/keys/``, created on first use. Loaded first: a bad key file stops the
    engine before it connects to anything.

    ``agent_keys``: the keys agents sign their commands with (ADR 0066); by default the ones
    the log trusts (ADR 0068), which the engine loads at start and follows. With a registry
    and no approved agent key, every agent command is refused.

    ``store``: the event log, if not PostgreSQL at ``database_url`` (the in-memory twin,
    ``services/eventstore/memory.py``, ADR 0090); the engine closes it when it stops.

    ``bus``: the bus, if not NATS at ``nats_url`` (the in-memory twin,
    ``services/bus/memory.py``, ADR 0093, 0098): the engine then opens no connection and
    declares its streams through the port."""
    order_signer = (
        signer if signer is not None else load_or_create_signer(keys_dir(settings.state_dir))
    )
    if store is None:
        assert database_url is not None, "the engine needs a store or a database to build one"
        store = await PostgresEventStore.connect(database_url, pool_max=settings.db_pool_max)
    limits = stream_limits(settings)
    window_s = settings.jetstream_duplicate_window_s
    nc: Client | None = None
    js: JetStreamContext | None = None
    reconnects: Reconnects | None = None
    if bus is None:
        assert nats_url is not None, "the engine needs a bus or a NATS URL to connect to"
        # ``creds``: the engine's nkey seed file (default CORRIDOR_CREDS; ADR 0060).
        reconnects = Reconnects()  # the relay gives up lost acks on a reconnect (ADR 0097)
        nc = await connect(nats_url, name="corridor-engine", creds=creds, reconnects=reconnects)
        nats_js = js = nc.jetstream(publish_async_max_pending=settings.relay_inflight_max)
        # The bus port over this connection (ADR 0092, 0098): what has moved onto it takes it.
        bus = NatsBus(nc, js)

        def declare() -> Awaitable[None]:
            return ensure_streams(
                nats_js,
                duplicate_window_s=window_s,
                limits=limits,
                replicas=settings.bus_stream_replicas,  # ADR 0195
            )
    else:
        port = bus

        def declare() -> Awaitable[None]:
            return declare_streams(port, duplicate_window_s=window_s)

    await declare()
    document = load_policy(settings.policy_file) if settings.policy_file else load_default_policy()
    default_policy = PolicyEngine(document)
    table = corridor_table(
        settings.corridors, keysend_unsupported=settings.keysend_unsupported_nodes
    )
    engine_clock = clock or SystemClock()
    # Only the nodes the corridor table routes to have a place on the board (ADR 0062).
    our_nodes = {(c.region, c.node) for candidates in table.corridors.values() for c in candidates}
    health = HealthBoard(
        nodes=our_nodes,
        interval_ms=int(settings.health_interval_s * 1000),
    )

    def live_router() -> Router:
        # Health snapshots are data: the router itself stays pure.
        return OrderedRouter(
            table, health.snapshot(engine_clock.now_ms()), blocked=processor.recon.tripped()
        )

    # One channel for everything this process commits: the writer loop, the checkpointer and
    # the dead-letter desk publish; the relay, the checkpointer, the deadline scheduler and the
    # spend book listen (ADR 0095). Each gets it in its constructor.
    committed = CommittedBatches()
    processor = CommandProcessor(
        store,
        clock=engine_clock,
        ids=ids or RandomIds(),
        policy=policy or (lambda: default_policy),
        router=router or live_router,
        network=settings.network,
        attempts_max=settings.attempts_max,
        pay_timeout_s=settings.pay_timeout_s,
        batch_max=settings.intake_batch_max,
        queue_max=settings.intake_queue_max,
        cache_max=settings.state_cache_max,
        baseline_policy_version=document.version,
        jit_policy=jit_policy_from(settings),
        signer=order_signer,
        rejections_per_minute=settings.policy_rejections_per_minute_max,
        committed=committed,
        key_lookup=agent_keys,
        webhooks=engine_book(settings),  # ADR 0175, 0176
        our_nodes=OurNodes(our_nodes),  # ADR 0249: the nodes a rebalance may pay
        rebalance_rules=RebalanceRules(  # ADR 0244, 0245
            auto_amount_msat_max=settings.liquidity_rebalance_auto_max_msat,
            fee_budget_msat_per_day=settings.liquidity_fee_budget_msat_per_day,
            pay_timeout_s=settings.pay_timeout_s,
        ),
        channel_policy=channel_policy(
            auto_open_msat_max=settings.channel_open_auto_max_msat,
            open_msat_max=settings.channel_open_max_msat,
            fee_budget_msat_per_day=settings.channel_fee_budget_msat_per_day,  # ADR 0285
        ),  # ADR 0236
    )
    deadlines = DeadlineScheduler(processor, engine_clock, committed)
    relay = OutboxRelay(
        store,
        js,
        bus=bus,
        # The bus port's NATS adapter (ADR 0092): its fenced publishes are FencedPublisher's.
        fenced=bus,
        batch_max=settings.relay_batch_max,
        poll_s=settings.relay_poll_s,
        reconnects=reconnects,
        ensure_streams=declare,
        committed=committed,
    )
    checkpoints = Checkpointer(
        store,
        bus,
        order_signer,
        engine_clock,
        every_events=checkpoint_every_events,
        every_s=checkpoint_every_s,
        committed=committed,
    )
    lookup = credentials if credentials is not None else lookup_from_settings(settings)
    authenticator = Authenticator(lookup, table, agent_keys=processor.key_lookup)
    dead_letters = DeadLetterDesk(bus, store, authenticator, engine_clock, committed)
    return Engine(
        settings=settings,
        store=store,
        nc=nc,
        js=js,
        bus=bus,
        processor=processor,
        committed=committed,
        api=ApiService(
            bus,
            processor,
            corridors=table,
            authenticator=authenticator,
            recon_cursors=ReconciliationCursors(store),
        ),
        commands=CommandStreamConsumer(bus, processor, authenticator=authenticator),
        relay=relay,
        deadlines=deadlines,
        health=health,
        health_listener=HealthListener(health, engine_clock.now_ms),
        checkpoints=checkpoints,
        dead_letters=dead_letters,
        claims=ClaimPruner(store, horizon_s=settings.idempotency_retention_s),
        sweeper=Sweeper(
            store,
            processor,
            relay,
            engine_clock,
            interval_s=settings.sweep_interval_s,
            reissue_after_s=settings.reissue_after_s,
            life_s=settings.intent_life_s,
        ),
    )
