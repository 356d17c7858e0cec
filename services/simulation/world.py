"""One seed's run of the whole engine: production ``bootstrap()``, production executors, the
simulated Lightning network, all on one virtual-time loop, faulted by the seed (ADR 0100).

What is swapped, and nothing else: the store (``InMemoryEventStore``, reached through each
process's ``StoreHandle``), the bus (``MemoryBus``, through each process's ``BusConnection``),
the clock (``VirtualTimeLoop``) and the Lightning network (``SimNetwork`` through the
in-process ``SimNodeAdapter``, ADR 0114). Callers and an operator speak the engine's API as
JSON requests on the bus, as integrators do. The verdict reads the log and the network's own
ledger (``services/simulation/invariants.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.bus.memory import MemoryBus
from services.bus.port import BusError
from services.eventstore.port import EventStore, StoredEvent
from services.executor.limits import ExecutorLimits
from services.executor.worker import Executor
from services.lightning.sim_direct import SimNodeAdapter
from services.policy.loader import load_default_policy
from services.settings import DEFAULT_CORRIDORS, Settings
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.sim.network import SimNetwork
from services.sim.topology import default_topology
from services.simulation import invariants
from services.simulation.channel_opens import (
    ChannelOpenWorkload,
    channel_open_invariants,
    funding_by_op,
)
from services.simulation.connections import BusConnection, Database, StoreHandle, Weather
from services.simulation.faults import FaultKind, FaultPlan, FaultyStore
from services.simulation.rebalances import (
    PLANNER,
    RebalanceWorkload,
    between_ours,
    rebalance_invariants,
)
from services.simulation.receives import ReceiveWorkload, node_invoices, receive_invariants
from services.simulation.scheduler import SeededIds
from services.simulation.virtual_loop import (
    LoopClock,
    VirtualTimeLoop,
    WouldBlockForever,
    run_virtual,
)

# Faulted steps per seed; each lasts up to STEP_S_MAX virtual seconds.
STEPS: Final = 40
# Every this many steps the invariants that hold at any instant are checked.
CHECK_EVERY: Final = 10
STEP_S_MAX: Final = 3.0
# Once faults heal, every accepted intent must be at rest within this (virtual seconds): past
# the sweeper's re-issue bound, short of the intent's life (which would end it as escalated).
HEAL_S_MAX: Final = 1_500.0
HEAL_CHECK_S: Final = 10.0
# What callers wait for an answer before asking again (the same idempotency key).
REQUEST_TIMEOUT_S: Final = 5.0
RETRY_S: Final = 2.0
# (caller id, kind, smallest amount, largest amount) in msat.
CALLERS: Final = (
    ("shop", "service", 10_000, 2_000_000),
    ("ann", "human", 10_000, 900_000),
    ("bot", "agent", 600_000, 1_000_000),
)
OPERATOR: Final = "olga"
CORRIDORS: Final = tuple(sorted(DEFAULT_CORRIDORS))
MAX_FEE_MSAT: Final = 5_000
# A component crashed by the plan comes back after 1..RESTART_STEPS_MAX steps.
RESTART_STEPS_MAX: Final = 3
# An expiry strikes one of the newest intents.
RECENT_INTENTS: Final = 4
# Steps a node outage lasts, at most.
OUTAGE_STEPS_MAX: Final = 8
# The share of steps a fault strikes at.
FAULT_RATE: Final = 0.25
# Seeds run this share with two engines on the one store.
TWO_ENGINES_SHARE: Final = 0.3
WORLD_KINDS: Final = (
    FaultKind.MESSAGE_DROP, FaultKind.MESSAGE_DUPLICATE, FaultKind.MESSAGE_REORDER,
    FaultKind.MESSAGE_DELAY, FaultKind.LOST_COMMIT_REPLY, FaultKind.WRITE_FAILS_BEFORE_COMMIT,
    FaultKind.DATABASE_RESTART, FaultKind.ENGINE_CRASH, FaultKind.RELAY_CRASH,
    FaultKind.EXECUTOR_CRASH, FaultKind.STREAM_LOSS, FaultKind.NODE_OUTAGE,
    FaultKind.LIQUIDITY_DEPLETION, FaultKind.STALE_CALLBACK, FaultKind.EXPIRY,
)  # fmt: skip
STALLED: Final = "no_stall"


@dataclass
class WorldResult:
    seed: int
    plan: FaultPlan
    engines: int
    violations: list[invariants.Violation] = field(default_factory=list)
    violation_steps: list[int] = field(default_factory=list)
    faults_injected: Counter[str] = field(default_factory=Counter)
    intents: int = 0
    settled: int = 0
    virtual_s: float = 0.0
    log_hash: str = ""  # the chain's head: equal for two runs of one seed
    receives: int = 0  # receive intents in the log (ADR 0220)
    receives_paid: int = 0  # of them credited (InvoicePaid)
    rebalances: int = 0  # rebalances requested in the log (ADR 0282)
    rebalances_succeeded: int = 0  # of them paid (RebalanceSucceeded)
    channel_opens: int = 0  # channel opens requested in the log (ADR 0283)
    channel_opens_completed: int = 0  # of them opened after their confirmations
    trace: list[str] = field(default_factory=list)


@dataclass
class _Process:
    conn: BusConnection
    task: asyncio.Task[Any] | None = None


class World:
    def __init__(
        self,
        seed: int,
        *,
        steps: int = STEPS,
        engines: int | None = None,
        channel_opens: bool = False,
    ) -> None:
        self.seed = seed
        # Off by default: an open whose order is lost with CORRIDOR_DISPATCH is not re-issued
        # (ADR 0283's open gap), so `make sim` would fail on it until that is fixed.
        self.with_channel_opens = channel_opens
        self.steps = steps
        self.rng = random.Random(f"workload:{seed}")
        self.plan = FaultPlan.draw(seed, steps=steps, rate=FAULT_RATE, kinds=WORLD_KINDS)
        self.engine_count = engines or (2 if self.rng.random() < TWO_ENGINES_SHARE else 1)
        self.weather = Weather(random.Random(f"messages:{seed}"))
        self.document = load_default_policy()
        self.trace: list[str] = []
        self.injected: Counter[str] = Counter()
        self.step = 0
        self.accepted: dict[str, str] = {}  # intent id -> caller id
        self.waiting: dict[str, None] = {}  # intents an operator has to decide
        self.outcomes: list[tuple[str, bytes]] = []  # executors' reports, for stale copies
        self.violations: list[invariants.Violation] = []
        self.violation_steps: list[int] = []
        self._keys = 0
        self._hashes: dict[str, str] = {}  # intent id -> its invoice's payment hash
        self._tasks: list[asyncio.Task[Any]] = []
        self._restarts: list[tuple[int, str]] = []  # (step, "kind:name") to bring back

    # Building the world, on the running virtual loop.

    async def _build(self) -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop), "the world runs on virtual time only"
        self.loop = loop
        self.clock = LoopClock(loop)
        self.network = SimNetwork.from_topology(
            default_topology(), seed=self.seed, now_s=loop.wall_s
        )
        self.merchants = sorted(n.name for n in self.network.nodes.values()
                                if n.role == "merchant")  # fmt: skip
        self.ours = {n.name: n.region or "" for n in self.network.nodes.values()
                     if n.role == "ours"}  # fmt: skip
        self.bus = MemoryBus()
        self.database = Database(FaultyStore(now_ms=self.clock.now_ms))
        self.ids = SeededIds(random.Random(f"ids:{self.seed}"))
        private = hashlib.sha256(f"engine-key:{self.seed}".encode()).digest()
        self.signer = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(private))
        self.settings = Settings(state_dir=Path("/nonexistent/corridor-simulation"))
        self.engines: dict[int, Engine | None] = {}
        self.engine_conns: dict[int, BusConnection] = {}
        self.executors: dict[str, tuple[Executor, _Process] | None] = {}
        self.callers = {c[0]: BusConnection(self.bus, f"caller-{c[0]}", self.weather)
                        for c in CALLERS}  # fmt: skip
        self.operator = BusConnection(self.bus, f"operator-{OPERATOR}", self.weather)
        self.planner = BusConnection(self.bus, f"caller-{PLANNER}", self.weather)
        # Receives (ADR 0220): callers ask for invoices, merchants pay most of them.
        self.receives = ReceiveWorkload(
            self.seed, network=self.network, regions=self.ours.values(), merchants=self.merchants
        )
        # Rebalances (ADR 0282): the planner moves funds between our nodes, an operator
        # approves the large moves.
        self.rebalances = RebalanceWorkload(self.seed, network=self.network, ours=self.ours)
        # Channel opens (ADR 0283): the operator opens channels to merchants; a block a step.
        self.channel_opens = ChannelOpenWorkload(
            self.seed, network=self.network, ours=self.ours, merchants=self.merchants
        )
        for i in range(self.engine_count):
            await self._start_engine(i)
        for node in sorted(self.ours):
            self._start_executor(node)

    async def _start_engine(self, i: int) -> None:
        conn = BusConnection(self.bus, f"engine-{i}", self.weather)
        try:
            engine = await bootstrap(
                self.settings, store=cast(EventStore, StoreHandle(self.database)), bus=conn,
                clock=self.clock, ids=self.ids, signer=self.signer, credentials=None,
            )  # fmt: skip
            await engine.start()
        except (OSError, BusError, TimeoutError) as exc:
            # The database is restarting: this engine comes up a step later.
            self._note(f"engine-{i} start failed: {type(exc).__name__}")
            await conn.close()
            self._later(1, f"engine:{i}")
            self.engines[i] = None
            return
        self.engines[i] = engine
        self.engine_conns[i] = conn
        self._note(f"engine-{i} up")

    async def _crash_engine(self, i: int) -> None:
        engine = self.engines.get(i)
        if engine is None:
            return
        self.engines[i] = None
        await self.engine_conns[i].close()
        with contextlib.suppress(Exception):
            await engine.stop(timeout_s=1.0)
        self._note(f"engine-{i} crashed")

    def _start_executor(self, node: str) -> None:
        conn = BusConnection(self.bus, f"executor-{node}", self.weather)
        conn.tap = self._tap_outcome
        executor = Executor(
            bus=conn, region=self.ours[node], node_name=node,
            node=SimNodeAdapter(self.network, node), executor_id=f"{node}-{self.step}",
            secret=hashlib.sha256(f"keysend:{node}".encode()).digest(),
            limits=ExecutorLimits(), verifier=Ed25519Keyring([self.signer.public_key]),
            jitter=random.Random(f"jitter:{self.seed}:{node}:{self.step}"),
            now_s=self.loop.wall_s,
        )  # fmt: skip
        process = _Process(conn, asyncio.create_task(executor.run(), name=f"executor-{node}"))
        self.executors[node] = (executor, process)

    async def _crash_executor(self, node: str) -> None:
        running = self.executors.get(node)
        if running is None:
            return
        self.executors[node] = None
        _, process = running
        await process.conn.close()
        assert process.task is not None
        process.task.cancel()  # a killed worker acks nothing
        with contextlib.suppress(BaseException):
            await process.task
        self._note(f"executor {node} crashed")

    def _tap_outcome(self, subject: str, data: bytes) -> None:
        if subject.startswith(f"{subjects.API_PREFIX}.outcome."):
            self.outcomes.append((subject, data))

    def _note(self, line: str) -> None:
        self.trace.append(f"{self.step:4d} {line}")

    # The run.

    async def run(self) -> WorldResult:
        await self._build()
        try:
            for step in range(self.steps):
                self.step = step
                await self._restart_due()
                await self._faults(self.plan.at_start(step))
                self._workload()
                await asyncio.sleep(self.rng.uniform(0.5, STEP_S_MAX))
                self.weather.kinds = ()  # message faults last one step
                if step % CHECK_EVERY == CHECK_EVERY - 1:
                    await self._check_midway()
            await self._heal()
        except WouldBlockForever as exc:
            self._violate(STALLED, f"the loop stalled: {exc}")
        finally:
            for task in self._tasks:
                task.cancel()
            await self._shutdown()
        return await self._verdict()

    async def _restart_due(self) -> None:
        due = [what for at, what in self._restarts if at <= self.step]
        self._restarts = [(at, what) for at, what in self._restarts if at > self.step]
        for what in due:
            kind, _, name = what.partition(":")
            if kind == "engine":
                await self._start_engine(int(name))
            elif kind == "executor":
                if self.executors.get(name) is None:
                    self._start_executor(name)
                    self._note(f"executor {name} up")
            elif kind == "online":
                self.network.faults.set_offline(name, offline=False)
                self._note(f"node {name} online")
            elif kind == "database":
                self.database.up()
                self._note("database up")

    def _later(self, steps: int, what: str) -> None:
        self._restarts.append((self.step + steps, what))

    async def _faults(self, kinds: list[FaultKind]) -> None:
        self.weather.kinds = tuple(k for k in kinds if k in _MESSAGE_KINDS)
        store = cast(FaultyStore, self.database.store)
        for kind in kinds:
            self._note(f"fault {kind}")
            if kind in _MESSAGE_KINDS:
                continue
            self.injected[kind.value] += 1
            if kind is FaultKind.WRITE_FAILS_BEFORE_COMMIT:
                store.fail_next_append = True
            elif kind is FaultKind.LOST_COMMIT_REPLY:
                store.lose_next_reply = True
            elif kind is FaultKind.DATABASE_RESTART:
                self.database.restart()
                self._later(1 + self.rng.randrange(2), "database:")
            elif kind is FaultKind.ENGINE_CRASH:
                i = self.rng.randrange(self.engine_count)
                if self.engines.get(i) is not None:
                    await self._crash_engine(i)
                    self._later(1 + self.rng.randrange(RESTART_STEPS_MAX), f"engine:{i}")
            elif kind is FaultKind.RELAY_CRASH:
                self._crash_relay()
            elif kind is FaultKind.EXECUTOR_CRASH:
                node = self._pick(sorted(self.ours))
                await self._crash_executor(node)
                self._later(1 + self.rng.randrange(RESTART_STEPS_MAX), f"executor:{node}")
            elif kind is FaultKind.STREAM_LOSS:
                stream = self._pick([subjects.DISPATCH_STREAM, subjects.EVT_STREAM])
                self.bus.delete_stream(stream)
                self._note(f"stream {stream} lost")
            elif kind is FaultKind.NODE_OUTAGE:
                node = self._pick(sorted(self.ours))
                self.network.faults.set_offline(node, offline=True)
                self._later(1 + self.rng.randrange(OUTAGE_STEPS_MAX), f"online:{node}")
                self._note(f"node {node} offline")
            elif kind is FaultKind.LIQUIDITY_DEPLETION:
                node = self._pick(sorted(self.ours))
                # Every channel of the node: it can pay nobody until the run ends.
                for channel in sorted(self.network.channels_of(node), key=lambda c: c.channel_id):
                    self.network.faults.drain_channel(channel.channel_id, toward=channel.peer)
                self._note(f"node {node} drained")
            elif kind is FaultKind.STALE_CALLBACK:
                self._stale_callback()
            elif kind is FaultKind.EXPIRY:
                self._expire_an_invoice()

    def _crash_relay(self) -> None:
        """The relay task dies mid-flight; its engine's supervisor would start a new one."""
        for i, engine in sorted(self.engines.items()):
            if engine is None:
                continue
            for task in engine._tasks:
                if task.get_name() == "relay" and not task.done():
                    task.cancel()
                    engine._spawn(engine.relay.run, "relay")
                    self._note(f"engine-{i} relay crashed and restarted")
                    return

    def _stale_callback(self) -> None:
        if not self.outcomes:
            return
        subject, data = self.outcomes[self.rng.randrange(len(self.outcomes))]
        self._note(f"stale {subject}")
        executor_conn = BusConnection(self.bus, "stale-executor", self.weather)
        self._spawn(self._resend(executor_conn, subject, data))

    async def _resend(self, conn: BusConnection, subject: str, data: bytes) -> None:
        with contextlib.suppress(TimeoutError, BusError):
            await conn.request(subject, data, timeout_s=REQUEST_TIMEOUT_S)

    def _expire_an_invoice(self) -> None:
        if not self.accepted:
            return
        # One of the newest: the older ones are paid already.
        intent_id = self._pick(list(self.accepted)[-RECENT_INTENTS:])
        payment_hash = self._hashes.get(intent_id)
        if payment_hash is None:
            return
        with contextlib.suppress(KeyError):  # paid already: nothing left to expire
            self.network.faults.expire_invoice(payment_hash)
            self._note(f"invoice of {intent_id[:8]} expired")

    def _pick(self, items: list[str]) -> str:
        return items[self.rng.randrange(len(items))]

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.create_task(coro))

    # The workload: callers submit and cancel, an operator decides.

    def _workload(self) -> None:
        for _ in range(self.rng.randrange(4)):
            self._submit_one()
        self.receives.step(self._spawn, self._ask_as, [(c[0], c[1]) for c in CALLERS])
        self.rebalances.step(self._spawn, self._ask_as, OPERATOR)
        if self.with_channel_opens:
            self.channel_opens.step(self._spawn, self._ask_as, OPERATOR)
            self.network.mine(1)
        if self.waiting and self.rng.random() < 0.3:
            intent_id = self._pick(list(self.waiting))
            verb = "approve" if self.rng.random() < 0.6 else "reject"
            self._spawn(self._decide(intent_id, verb))
        if self.accepted and self.rng.random() < 0.1:
            intent_id = self._pick(list(self.accepted))
            self._spawn(self._cancel(intent_id))

    def _submit_one(self) -> None:
        caller_id, kind, low, high = CALLERS[self.rng.randrange(len(CALLERS))]
        amount_msat = self.rng.randrange(low, high)
        merchant = self._pick(self.merchants)
        expiry_s = 3600 if self.rng.random() < 0.9 else self.rng.randrange(20, 120)
        invoice = self.network.create_invoice(merchant, amount_msat, "simulation", expiry_s)
        self._keys += 1
        body = {
            "type": "SubmitPaymentIntent", "version": 1,
            "idempotency_key": f"sim-{self._keys}",
            "caller": {"id": caller_id, "kind": kind},
            "corridor": self._pick(list(CORRIDORS)), "amount_msat": amount_msat,
            "max_fee_msat": MAX_FEE_MSAT, "payment_request": invoice.bolt11,
        }  # fmt: skip
        self._spawn(self._submit(caller_id, body, invoice.payment_hash))

    async def _ask(self, conn: BusConnection, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        """Ask until answered: a timeout or an ``unavailable`` answer is asked again, as the
        same command (a submit keeps its idempotency key)."""
        data = json.dumps(body).encode()
        while True:
            try:
                reply = await conn.request(subject, data, timeout_s=REQUEST_TIMEOUT_S)
            except (TimeoutError, BusError):
                await asyncio.sleep(RETRY_S)
                continue
            answer: dict[str, Any] = json.loads(reply.data)
            error = answer.get("error") or {}
            if not answer.get("ok") and error.get("code") == "unavailable":
                await asyncio.sleep(RETRY_S)
                continue
            return answer

    async def _ask_as(self, caller_id: str, subject: str, body: dict[str, Any]) -> Any:
        conn = {PLANNER: self.planner, OPERATOR: self.operator}.get(caller_id)
        return await self._ask(conn or self.callers[caller_id], subject, body)

    async def _submit(self, caller_id: str, body: dict[str, Any], payment_hash: str) -> None:
        answer = await self._ask(self.callers[caller_id],
                                 f"{subjects.API_PREFIX}.submit.{caller_id}", body)  # fmt: skip
        if answer.get("ok"):
            intent_id = str(answer["intent_id"])
            self.accepted.setdefault(intent_id, caller_id)
            self._hashes[intent_id] = payment_hash
            if answer.get("state") == "awaiting_approval":
                self.waiting[intent_id] = None

    async def _decide(self, intent_id: str, verb: str) -> None:
        self.waiting.pop(intent_id, None)
        body: dict[str, Any] = {
            "type": subjects.VERBS[verb], "version": 1, "intent_id": intent_id,
            "operator_id": OPERATOR,
        }  # fmt: skip
        if verb == "reject":
            body["reason"] = "simulation"
        await self._ask(self.operator, f"{subjects.API_PREFIX}.{verb}.{OPERATOR}", body)

    async def _cancel(self, intent_id: str) -> None:
        caller_id = self.accepted[intent_id]
        kind = next(c[1] for c in CALLERS if c[0] == caller_id)
        body = {
            "type": "CancelPaymentIntent", "version": 1, "intent_id": intent_id,
            "caller": {"id": caller_id, "kind": kind},
        }  # fmt: skip
        await self._ask(self.callers[caller_id],
                        f"{subjects.API_PREFIX}.cancel.{caller_id}", body)  # fmt: skip

    # Healing and the verdict.

    async def _heal(self) -> None:
        """Faults end, crashed parts come back, the operator decides what waits; then every
        accepted intent must come to rest."""
        self.step += 1
        self._note("heal")
        self.weather.kinds = ()
        self.database.up()
        # Whatever was to come back later comes back now.
        self._restarts = [(self.step, what) for _, what in self._restarts]
        await self._restart_due()
        for node in sorted(self.ours):
            self.network.faults.set_offline(node, offline=False)
            if self.executors.get(node) is None:
                self._start_executor(node)
        for i in range(self.engine_count):
            if self.engines.get(i) is None:
                await self._start_engine(i)
        deadline_s = self.loop.time() + HEAL_S_MAX
        while self.loop.time() < deadline_s:
            for intent_id in list(self.waiting):
                self._spawn(self._decide(intent_id, "approve"))
            for rebalance_id in sorted(self.rebalances.waiting):
                self._spawn(self.rebalances.approve(self._ask_as, OPERATOR, rebalance_id))
            if self.with_channel_opens:
                self.network.mine(1)  # opens confirm while the world heals
            await asyncio.sleep(HEAL_CHECK_S)
            if await self._at_rest():
                return
        self._note("not at rest by the heal deadline")

    async def _at_rest(self) -> bool:
        events = await self._log()
        states = invariants.replay(events)
        receipts = receive_invariants(
            events, node_invoices(self.network, events), at_rest=True
        )  # every settled receive credited too
        moves = rebalance_invariants(events, self._moves(), at_rest=True)
        opens = channel_open_invariants(events, self._funding(), at_rest=True)
        resting = not invariants.at_rest(self._intents(states), states)
        return resting and not receipts and not moves and not opens

    def _funding(self) -> dict[str, set[str]]:
        return funding_by_op(self.network, self.ours)

    def _moves(self) -> list[Any]:
        """The network's payments between our nodes: rebalances' only (ADR 0282)."""
        return between_ours(self.network.payments(), self.ours)

    def _intents(self, states: dict[str, Any]) -> list[str]:
        # Every intent in the log, whether or not its caller heard it was accepted.
        return sorted(set(states) | set(self.accepted))

    async def _log(self) -> list[StoredEvent]:
        store = self.database.store
        return await store.read_all(after_position=0, limit=await store.head_position() + 1)

    async def _shutdown(self) -> None:
        for node in sorted(self.executors):
            await self._crash_executor(node)
        for i in sorted(self.engines):
            engine = self.engines.get(i)
            if engine is not None:
                await self.engine_conns[i].close()
                with contextlib.suppress(Exception):
                    await engine.stop(timeout_s=1.0)
        await self.network.aclose()

    async def _check_midway(self) -> None:
        """What holds at any instant, faults or not (the rest once they have healed)."""
        events = await self._log()
        found = [
            *invariants.hash_chain(events),
            *invariants.known_transitions(events),
            *invariants.reroute_proven(events),
            *invariants.spend_limits(events, self.document),
            *invariants.no_hash_paid_twice(self.network.payments()),
            *receive_invariants(events, node_invoices(self.network, events), at_rest=False),
            *rebalance_invariants(events, self._moves(), at_rest=False),
            *channel_open_invariants(events, self._funding(), at_rest=False),
        ]
        self.violations.extend(found)
        self.violation_steps.extend([self.step] * len(found))

    def _violate(self, invariant: str, evidence: str) -> None:
        self.violations.append(invariants.Violation(invariant, evidence))
        self.violation_steps.append(self.step)

    async def _verdict(self) -> WorldResult:
        events = await self._log()
        states = invariants.replay(events)
        reported: dict[str, Any] = {}
        for engine in self.engines.values():
            if engine is None:
                continue
            for intent_id, state in states.items():
                cached = engine.processor.cache.get(intent_id)
                if cached is not None and cached.version == state.version:
                    reported[intent_id] = cached
        payments = self.network.payments()
        found = [
            *invariants.check_log(events, reported, accepted=self._intents(states),
                                  document=self.document),
            # Our nodes' payments: outside payers paying our receives move no value of ours;
            # rebalances (between our nodes) are held to their own invariants.
            *invariants.check_network([p for p in payments if p.origin in self.ours
                                       and p.destination not in self.ours], events),
            *receive_invariants(events, node_invoices(self.network, events), at_rest=True),
            *invariants.no_hash_paid_twice(payments),
            *rebalance_invariants(events, self._moves(), at_rest=True),
            *channel_open_invariants(events, self._funding(), at_rest=True),
        ]  # fmt: skip
        try:
            self.network.check_invariants()
        except AssertionError as exc:
            found.append(invariants.Violation("network_conserved", str(exc)))
        self.violations.extend(found)
        self.violation_steps.extend([self.step] * len(found))
        store = cast(FaultyStore, self.database.store)
        self.injected.update(store.injected)
        self.injected.update(self.weather.injected)
        settled = sum(1 for s in states.values() if s.status == "settled")
        return WorldResult(
            seed=self.seed, plan=self.plan, engines=self.engine_count,
            violations=self.violations, violation_steps=self.violation_steps,
            faults_injected=self.injected, intents=len(states), settled=settled,
            virtual_s=self.loop.time(), trace=self.trace,
            log_hash=events[-1].hash.hex() if events else "",
            receives=sum(1 for e in events if e.type == "ReceiveRequested"),
            receives_paid=sum(1 for e in events if e.type == "InvoicePaid"),
            rebalances=sum(1 for e in events if e.type == "RebalanceRequested"),
            rebalances_succeeded=sum(1 for e in events if e.type == "RebalanceSucceeded"),
            channel_opens=sum(1 for e in events if e.type == "ChannelOpenRequested"),
            channel_opens_completed=sum(1 for e in events if e.type == "ChannelOpened"),
        )  # fmt: skip


_MESSAGE_KINDS: Final = frozenset({
    FaultKind.MESSAGE_DROP, FaultKind.MESSAGE_DUPLICATE, FaultKind.MESSAGE_REORDER,
    FaultKind.MESSAGE_DELAY,
})  # fmt: skip


def run_world(
    seed: int, *, steps: int = STEPS, engines: int | None = None, channel_opens: bool = False
) -> WorldResult:
    world = World(seed, steps=steps, engines=engines, channel_opens=channel_opens)
    return run_virtual(world.run())
