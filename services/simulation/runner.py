"""One seed's run: the engine's writer loop over the in-memory store, driven and faulted by
the seed, then checked against the invariants (ADR 0099). The invariants' unit tests use it;
``corridor simulate`` runs the whole engine instead (``world.py``, ADR 0100).

What runs is the production ``CommandProcessor`` (writer loop, planning, spend book, cache)
over ``FaultyStore`` with a ``VirtualClock`` and ``SeededIds``. Callers submit, cancel and
expire; a stand-in executor pays each dispatched attempt on a stand-in network ledger (lookup
before send, as the real executor does) and reports the outcome. Every message is a task in
the seeded run queue, so the seed chooses what is batched with what. Until the bus wiring
lands, the relay, the real executors and the simulated Lightning network stay out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from schemas import commands as cmd
from schemas.common import Caller
from schemas.replies import CommandAccepted, CommandRejected
from services.bolt11.codec import encode_invoice
from services.bootstrap import corridor_table
from services.domain.intent.evolve import fold
from services.domain.intent.state import PaymentIntent
from services.domain.intent.status import IntentStatus
from services.domain.intent.transitions import ON_THE_WIRE_STATUSES
from services.domain.policy import PolicyEngine
from services.domain.routing import OrderedRouter
from services.engine.event_codec import to_domain
from services.engine.ids import intent_id_for
from services.engine.processor import CommandEnvelope, CommandProcessor, Reply
from services.policy.loader import load_default_policy
from services.settings import DEFAULT_CORRIDORS
from services.simulation import invariants
from services.simulation.faults import FaultKind, FaultPlan, FaultyStore
from services.simulation.scheduler import RunQueue, SeededIds, VirtualClock

# Steps of faulted traffic per seed, then steps for the faults to heal and the work to drain.
STEPS: Final = 60
HEAL_STEPS_MAX: Final = 200
# Between steps (no command in flight) the invariants that hold at any time are checked this
# often; the rest once faults have healed.
CHECK_EVERY: Final = 10
# Tasks run together in one step: enough to fill writer batches, few enough to interleave.
STEP_TASKS_MAX: Final = 6
# Virtual time per step, at most (ms): the agent's hourly limit is reached within a run.
STEP_MS_MAX: Final = 2_000
PAYEE_KEY: Final = hashlib.sha256(b"corridor-simulation-payee").digest()
# (caller id, kind, smallest amount, largest amount) in msat.
CALLERS: Final = (
    ("shop", "service", 10_000, 2_000_000),
    ("ann", "human", 10_000, 900_000),
    ("bot", "agent", 600_000, 1_000_000),
)
CORRIDORS: Final = tuple(sorted(DEFAULT_CORRIDORS))
MAX_FEE_MSAT: Final = 1_000
# Every candidate node of the corridors, in a fixed order (a set's order varies per process).
NODES: Final = tuple(sorted({c.split("/")[1] for cs in DEFAULT_CORRIDORS.values() for c in cs}))
# A node fault and the reason its executor reports (with proof the attempt did not pay).
NODE_FAULTS: Final = (
    (FaultKind.NODE_OUTAGE, "no_route"),
    (FaultKind.LIQUIDITY_DEPLETION, "insufficient_liquidity"),
)


@dataclass(frozen=True, slots=True)
class NetPayment:
    """One payment on the stand-in network's ledger (a ``SimPayment``'s fields the invariants
    read)."""

    payment_hash: str
    origin: str
    amount_msat: int
    fee_msat: int
    status: str
    preimage: str


@dataclass
class SeedResult:
    seed: int
    plan: FaultPlan
    violations: list[invariants.Violation] = field(default_factory=list)
    violation_steps: list[int] = field(default_factory=list)
    faults_injected: Counter[str] = field(default_factory=Counter)
    intents: int = 0
    trace: list[str] = field(default_factory=list)


class Simulation:
    def __init__(self, seed: int, *, steps: int = STEPS) -> None:
        self.seed = seed
        self.steps = steps
        self.rng = random.Random(f"workload:{seed}")
        self.clock = VirtualClock()
        self.ids = SeededIds(random.Random(f"ids:{seed}"))
        self.store = FaultyStore(now_ms=self.clock.now_ms)
        self.plan = FaultPlan.draw(seed, steps=steps)
        self.queue = RunQueue(random.Random(f"order:{seed}"))
        self.document = load_default_policy()
        self._policy = PolicyEngine(self.document)
        self._table = corridor_table(DEFAULT_CORRIDORS)
        self.ledger: list[NetPayment] = []
        self.preimages: dict[str, str] = {}  # payment hash -> preimage (the payee's invoices)
        self.accepted: dict[str, None] = {}  # intent ids the engine accepted, in order
        self.injected: Counter[str] = Counter()
        self.step = 0
        self._submits = 0
        self._down_until = -1
        self._node_faults: dict[str, str] = {}  # node -> failure reason, for this step
        # Nodes down for the whole run (a scenario's choice, not the plan's): node -> reason.
        self.down_nodes: dict[str, str] = {}
        # Nodes whose executor, having paid, reports a failure with proof (a broken executor
        # the tests plant; never set by a run).
        self.false_proof_nodes: frozenset[str] = frozenset()
        self.violations: list[invariants.Violation] = []
        self.violation_steps: list[int] = []
        # Intents routed anew (stale callbacks replay their earlier attempt) and intents that
        # went to an operator (cancels aim at them), in order.
        self.rerouted: dict[str, None] = {}
        self.waiting: dict[str, None] = {}
        self.engine = self._new_engine()
        self._task: asyncio.Task[None] | None = None

    def _new_engine(self) -> CommandProcessor:
        return CommandProcessor(
            self.store, clock=self.clock, ids=self.ids, policy=lambda: self._policy,
            router=lambda: OrderedRouter(self._table), network="regtest",
            baseline_policy_version=self.document.version,
        )  # fmt: skip

    async def start(self) -> None:
        await self.engine.load_policy_state()
        await self.engine.load_spend()
        self._task = asyncio.get_running_loop().create_task(self.engine.run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _note(self, line: str) -> None:
        self.queue.note(f"{self.step:4d} {line}")

    # The run.

    async def run(self) -> SeedResult:
        await self.start()
        try:
            for step in range(self.steps):
                self.step = step
                self._workload()
                await self._step(self.plan.at(step))
                if step % CHECK_EVERY == CHECK_EVERY - 1:
                    await self._check_midway()
            await self.drain()
        finally:
            await self.stop()
        return await self.check()

    async def drain(self) -> None:
        """Run, without faults, until no task is left (or ``HEAL_STEPS_MAX`` steps)."""
        self.store.down = False
        self._node_faults = {}
        heal = 0
        while len(self.queue) and heal < HEAL_STEPS_MAX:
            self.step += 1
            heal += 1
            await self._step([])

    async def _step(self, faults: list[FaultKind]) -> None:
        self.clock.advance(self.rng.randrange(STEP_MS_MAX))
        for kind in faults:
            self._note(f"fault {kind}")
        self._node_faults = {}
        self.store.down = FaultKind.DATABASE_RESTART in faults
        if FaultKind.WRITE_FAILS_BEFORE_COMMIT in faults:
            self.store.fail_next_append = True
        if FaultKind.LOST_COMMIT_REPLY in faults:
            self.store.lose_next_reply = True
        for kind, reason in NODE_FAULTS:
            if kind in faults:
                node = NODES[self.rng.randrange(len(NODES))]
                self._node_faults[node] = reason
                self.injected[kind.value] += 1
        if FaultKind.STALE_CALLBACK in faults and self.accepted:
            self._push_stale_callback()
        if FaultKind.EXPIRY in faults and self.accepted:
            self.injected[FaultKind.EXPIRY.value] += 1
            self._push_expire()
        tasks = self.queue.take(STEP_TASKS_MAX)
        if FaultKind.MESSAGE_DROP in faults and tasks:
            # The sender hears nothing and sends again later.
            dropped = tasks.pop(0)
            self.injected[FaultKind.MESSAGE_DROP.value] += 1
            self._note(f"drop {dropped.name}")
            self.queue.push(dropped.name, dropped.run)
        if FaultKind.MESSAGE_DELAY in faults and tasks:
            delayed = tasks.pop()
            self.injected[FaultKind.MESSAGE_DELAY.value] += 1
            self._note(f"delay {delayed.name}")
            self.queue.push(delayed.name, delayed.run)
        if FaultKind.MESSAGE_DUPLICATE in faults and tasks:
            self.injected[FaultKind.MESSAGE_DUPLICATE.value] += 1
            tasks.append(tasks[0])
        if FaultKind.MESSAGE_REORDER in faults:
            self.injected[FaultKind.MESSAGE_REORDER.value] += 1
            tasks.reverse()
        for task in tasks:
            self._note(f"run {task.name}")
        await asyncio.gather(*(task.run() for task in tasks))
        if FaultKind.ENGINE_CRASH in faults:
            # Between steps: nothing of the engine survives but the log.
            self.injected[FaultKind.ENGINE_CRASH.value] += 1
            await self.stop()
            self.engine = self._new_engine()
            await self.start()
        self.store.down = False

    # The workload.

    def _workload(self) -> None:
        for _ in range(self.rng.randrange(4)):
            self._push_submit()
        if self.accepted and self.rng.random() < 0.1:
            # Half the cancels go to intents an operator has not approved yet (they end
            # cancelled); the rest to any intent (most are on the wire and are refused).
            waiting = list(self.waiting)
            if waiting and self.rng.random() < 0.5:
                intent_id = waiting[self.rng.randrange(len(waiting))]
            else:
                intent_id = self._some_intent()
            self.queue.push(f"cancel {intent_id[:8]}", lambda: self._cancel(intent_id))

    def _some_intent(self) -> str:
        ids = list(self.accepted)
        return ids[self.rng.randrange(len(ids))]

    def submit(self) -> None:
        """Queue one seeded submit."""
        self._push_submit()

    def _push_submit(self) -> None:
        self._submits += 1
        caller_id, kind, low, high = CALLERS[self.rng.randrange(len(CALLERS))]
        amount_msat = self.rng.randrange(low, high)
        preimage = f"{self.rng.getrandbits(256):064x}"
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        self.preimages[payment_hash] = preimage
        bolt11 = encode_invoice(
            privkey=PAYEE_KEY, network="regtest", payment_hash=payment_hash,
            payment_secret=f"{self.rng.getrandbits(256):064x}", amount_msat=amount_msat,
            description="sim", created_at_s=self.clock.now_ms() // 1000, expiry_s=3600,
        )  # fmt: skip
        command = cmd.SubmitPaymentIntent(
            idempotency_key=f"k-{self._submits}", caller=Caller(id=caller_id, kind=kind),  # type: ignore[arg-type]
            corridor=CORRIDORS[self.rng.randrange(len(CORRIDORS))], amount_msat=amount_msat,
            max_fee_msat=MAX_FEE_MSAT, payment_request=bolt11,
        )  # fmt: skip
        name = f"submit {caller_id}/{command.idempotency_key}"
        self.queue.push(name, lambda: self._submit(name, command))

    async def _send(self, command: cmd.Command) -> Reply | None:
        """The reply, or ``None`` when the engine said to retry."""
        reply = await self.engine.execute(CommandEnvelope(command=command))
        if isinstance(reply, CommandRejected) and reply.error.code == "unavailable":
            return None
        return reply

    async def _submit(self, name: str, command: cmd.SubmitPaymentIntent) -> None:
        reply = await self._send(command)
        if reply is None:
            self.queue.push(name, lambda: self._submit(name, command))  # same key
            return
        if isinstance(reply, CommandAccepted):
            if reply.intent_id not in self.accepted:
                self.accepted[reply.intent_id] = None
            assert reply.intent_id == intent_id_for(command.caller.id, command.idempotency_key)
            self._after(reply)

    def _after(self, reply: CommandAccepted) -> None:
        if reply.state == IntentStatus.AWAITING_APPROVAL:
            self.waiting[reply.intent_id] = None
        if reply.state == IntentStatus.DISPATCHED:
            intent_id = reply.intent_id
            self.queue.push(f"pay {intent_id[:8]}", lambda: self._pay(intent_id))

    async def _cancel(self, intent_id: str) -> None:
        state = await self._state(intent_id)
        assert state is not None
        command = cmd.CancelPaymentIntent(intent_id=intent_id, caller=state.caller)
        if await self._send(command) is None:
            self.queue.push(f"cancel {intent_id[:8]}", lambda: self._cancel(intent_id))

    def _push_expire(self) -> None:
        intent_id = self._some_intent()
        self.queue.push(f"expire {intent_id[:8]}", lambda: self._expire(intent_id))

    async def _expire(self, intent_id: str) -> None:
        if await self._send(cmd.ExpirePaymentIntent(intent_id=intent_id)) is None:
            self.queue.push(f"expire {intent_id[:8]}", lambda: self._expire(intent_id))

    # The stand-in executor and network.

    async def _state(self, intent_id: str) -> PaymentIntent | None:
        return fold(to_domain(e) for e in await self.store.read_stream(intent_id))

    async def _pay(self, intent_id: str) -> None:
        """The executor's work order for the current attempt: look up, pay once, report."""
        state = await self._state(intent_id)
        if state is None or state.status not in ON_THE_WIRE_STATUSES:
            return
        assert state.node is not None and state.region is not None
        assert state.payment_hash is not None
        # The node's own record, as ``LookupPayment``/``listpays`` answer: per origin and hash.
        paid = next((p for p in self.ledger if p.payment_hash == state.payment_hash
                     and p.origin == state.node and p.status == "succeeded"), None)  # fmt: skip
        reason = self._node_faults.get(state.node) or self.down_nodes.get(state.node)
        if paid is None and reason is None:
            fee_msat = self.rng.randrange(MAX_FEE_MSAT // 2)
            paid = NetPayment(state.payment_hash, state.node, state.amount_msat, fee_msat,
                              "succeeded", self.preimages[state.payment_hash])  # fmt: skip
            self.ledger.append(paid)
        if paid is not None and state.node in self.false_proof_nodes:
            # A broken executor (tests only): it paid, and says it proved it did not.
            paid, reason = None, "no_route"
        if paid is not None:
            outcome = cmd.RecordPaymentOutcome(
                intent_id=intent_id, attempt=state.attempt, outcome="succeeded",
                region=state.region, node=state.node, payment_hash=paid.payment_hash,
                preimage=paid.preimage, fee_msat=paid.fee_msat,
            )  # fmt: skip
        else:
            outcome = cmd.RecordPaymentOutcome(
                intent_id=intent_id, attempt=state.attempt, outcome="failed",
                region=state.region, node=state.node, payment_hash=state.payment_hash,
                failure_reason=reason, confirmed_not_paid=True,  # type: ignore[arg-type]
            )  # fmt: skip
        reply = await self._send(outcome)
        if reply is None:
            self.queue.push(f"pay {intent_id[:8]}", lambda: self._pay(intent_id))
        elif isinstance(reply, CommandAccepted):
            if paid is None and reply.state == IntentStatus.DISPATCHED:
                self.rerouted[intent_id] = None
            self._after(reply)

    def _push_stale_callback(self) -> None:
        if not self.rerouted:
            return
        ids = list(self.rerouted)
        intent_id = ids[self.rng.randrange(len(ids))]
        self.queue.push(f"stale {intent_id[:8]}", lambda: self._stale(intent_id))

    async def _stale(self, intent_id: str) -> None:
        """An executor's late, true word on an attempt already superseded: the earlier
        attempt failed with proof (else there would be no later one)."""
        state = await self._state(intent_id)
        if state is None or state.attempt < 2:
            return
        self.injected[FaultKind.STALE_CALLBACK.value] += 1
        earlier = state.tried_nodes[state.attempt - 2]
        outcome = cmd.RecordPaymentOutcome(
            intent_id=intent_id, attempt=state.attempt - 1, outcome="failed",
            region=earlier[0], node=earlier[1], failure_reason="no_route",
            confirmed_not_paid=True,
        )  # fmt: skip
        await self._send(outcome)

    # The verdict.

    def _reported(self) -> dict[str, PaymentIntent]:
        return {i: s for i in self.accepted if (s := self.engine.cache.get(i)) is not None}

    async def _check_midway(self) -> None:
        events = await self.store.read_all(after_position=0, limit=10**9)
        found = [
            *invariants.hash_chain(events),
            *invariants.known_transitions(events),
            *invariants.replay_equals_states(events, self._reported()),
            *invariants.reroute_proven(events),
            *invariants.spend_limits(events, self.document),
            *invariants.no_hash_paid_twice(self.ledger),
        ]
        self.violations.extend(found)
        self.violation_steps.extend([self.step] * len(found))

    async def check(self) -> SeedResult:
        events = await self.store.read_all(after_position=0, limit=10**9)
        reported = {i: s for i in self.accepted if (s := self.engine.cache.get(i)) is not None}
        violations = [
            *invariants.check_log(events, reported, accepted=list(self.accepted),
                                  document=self.document),
            *invariants.check_network(self.ledger, events),
        ]  # fmt: skip
        self.injected.update(self.store.injected)
        return SeedResult(
            seed=self.seed, plan=self.plan, violations=[*self.violations, *violations],
            violation_steps=[*self.violation_steps, *[self.step] * len(violations)],
            faults_injected=self.injected,
            intents=len(self.accepted), trace=self.queue.trace,
        )  # fmt: skip


def run_seed(seed: int, *, steps: int = STEPS) -> SeedResult:
    return asyncio.run(Simulation(seed, steps=steps).run())
