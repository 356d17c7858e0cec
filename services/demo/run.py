"""`corridor demo`: the whole engine on embedded defaults, a seeded pilot workload, a report.

Starts NATS, PostgreSQL, the engine, the simulated 3-region network and one executor per
(region, node); submits the workload in waves across three corridors, with a scripted operator
for the approval tier; drains the liquidity of one node a third of the way through and takes
another node offline from half to 80 % of the workload; then reports from the event log and the
network's own ledger.

The same seed gives the same report, timings aside (docs/adr/0030): faults are injected between
waves, after intent N, never at a moment on the clock; a wave goes out only when the previous
one is at rest and routing has seen the last fault; and the intents of one wave belong to
different callers, whose policy inputs are disjoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from projections.pilot_metrics import build as build_pilot_metrics
from services.bootstrap import Engine, bootstrap
from services.bus.jetstream import connect
from services.cli.endpoints import write_endpoints
from services.cli.progress import Progress
from services.cli.stack_registry import registry_lookup
from services.demo.faults import FaultStep, fault_schedule, holding, inject, seen_by_router
from services.demo.operator import OPERATOR_ID, ScriptedOperator
from services.demo.rest import RestTracker, wait_until
from services.demo.screen import Screen, Silent
from services.demo.timeline import FaultMark, build_timeline
from services.demo.workload import CALLERS, IntentSpec, build_workload, waves
from services.devstack import DevStack
from services.engine.event_codec import to_recorded
from services.executor.fleet import ExecutorFleet, targets_from_corridors
from services.executor.keysend import SECRET_FILE_NAME, keysend_preimage, load_or_create_secret
from services.executor.limits import ExecutorLimits
from services.identity.agent_signatures import sign_command
from services.settings import Settings
from services.signing.file_keys import keys_dir, load_or_create_signer
from services.sim.runner import SimStack

log = structlog.get_logger("corridor.demo")

SUBMIT_TIMEOUT_S = 30.0
# A wave is at most one intent per caller; one not at rest after this is stuck, and the report
# shows its intents in non-final states (the log says which).
WAVE_TIMEOUT_S = 60.0
# Executors report node health this often, so routing sees an injected fault within a fraction
# of a second, and the workload waits for it no longer than that.
EXECUTOR_HEALTH_INTERVAL_S = 0.2
# The engine counts a report stale (the node unhealthy) after three of its intervals: 15 s, far
# beyond a report made late by a busy machine. In the demo a node is unhealthy only because its
# executor said so, never because the machine was slow.
ENGINE_HEALTH_INTERVAL_S = 5.0
FAULT_SEEN_TIMEOUT_S = 10.0
# Who sponsors each agent of the workload: the human who proposes its key (ADR 0068).
AGENT_SPONSORS = {"agent-ledger": "ops-alice", "agent-scout": "ops-bob"}


async def run_demo(
    *,
    seed: int,
    intents: int,
    state_dir: Path | None = None,
    screen: Screen | None = None,
    events_path: Path | None = None,
) -> dict[str, Any]:
    """Run the pilot and return the report (``render_table`` prints it); with
    ``events_path``, also write the log there as ``corridor replay`` prints it, so the pilot
    report can be run over the same events after the demo's servers are gone."""
    assert intents >= 1
    screen = screen or Silent()
    began = time.monotonic()
    work_dir = state_dir or Path(tempfile.mkdtemp(prefix="corridor-demo-"))
    settings = Settings(
        health_interval_s=ENGINE_HEALTH_INTERVAL_S, relay_poll_s=0.2, pay_timeout_s=20
    )
    screen.phase(1, "starting NATS, PostgreSQL, the engine, the executors, the simulated network")
    targets = targets_from_corridors(settings.corridors)
    creds = _make_credentials(work_dir, targets)
    stack = DevStack(work_dir / "servers", keep_data=False, identity_dir=work_dir)
    await asyncio.to_thread(stack.start)
    sim = SimStack(state_dir=work_dir / "sim", seed=seed)
    engine = fleet = operator = operator_nc = None
    callers: dict[str, Any] = {}
    try:
        await sim.start()
        write_endpoints(
            work_dir, {**stack.nats_endpoints(), "database_url": stack.database_url,
                       **sim.endpoints()},
        )  # fmt: skip
        engine = await bootstrap(
            settings, nats_url=stack.nats_url, database_url=stack.database_url,
            creds=stack.engine_creds, **registry_lookup(stack, settings),
            signer=load_or_create_signer(keys_dir(work_dir)),
            # No automatic checkpoints: they are appended asynchronously, so their log positions
            # (and every position after them in the report's timeline) would vary from run to
            # run, and the same seed must give the same report (ADR 0030).
            checkpoint_every_events=10**9, checkpoint_every_s=86_400.0,
        )  # fmt: skip
        tracker = RestTracker()
        engine.committed.subscribe("demo-rest", lambda batch: tracker.observe(batch.states))
        await engine.start()
        fleet = ExecutorFleet(
            nats_url=stack.nats_url, state_dir=work_dir, targets=targets,
            limits=ExecutorLimits(health_interval_s=EXECUTOR_HEALTH_INTERVAL_S),
            creds=creds.executors,
        )  # fmt: skip
        await fleet.start()
        # Each caller and the operator connect as themselves: their subjects are the only
        # ones their credentials may publish on (ADR 0060).
        for caller_id, _, _ in CALLERS:
            callers[caller_id] = await connect(
                stack.nats_url, name=f"corridor-demo-{caller_id}",
                creds=creds.callers.get(caller_id),
            )  # fmt: skip
        operator_nc = await connect(
            stack.nats_url, name="corridor-demo-operator", creds=creds.operator
        )
        operator = ScriptedOperator(operator_nc, seed=seed)
        await operator.start()
        # The agents' keys go through the two-person rule like anyone's (ADR 0068): the human
        # who sponsors each agent proposes its key, the operator approves it.
        agent_keys = await _register_agent_keys(callers, operator_nc, seed=seed)

        started = time.monotonic()
        merchants = sorted(n.name for n in sim.network.nodes.values() if n.role == "merchant")
        workload = build_workload(seed, intents, len(merchants))
        screen.phase(2, f"submitting {intents} intents in waves; faults follow the workload")
        driver = _Driver(
            callers=callers, sim=sim, engine=engine, tracker=tracker, merchants=merchants,
            agent_keys=agent_keys,
        )  # fmt: skip
        await driver.run(workload, fault_schedule(intents), screen)
        workload_done = time.monotonic()

        screen.phase(3, "reading the event log and the network's ledger; stopping")
        stored = await _all_events(engine)
        if events_path is not None:
            await asyncio.to_thread(_write_events, events_path, stored)
        report = _report(
            stored, sim, driver,
            secret=load_or_create_secret(work_dir / SECRET_FILE_NAME),
            attempts_max=settings.attempts_max,
        )  # fmt: skip
        report.update(
            seed=seed,
            operator={"approved": operator.approved, "rejected": operator.rejected},
        )
    finally:
        if operator is not None:
            await operator.stop()
        for client in [*callers.values(), *([operator_nc] if operator_nc else [])]:
            await client.close()
        if fleet is not None:
            await fleet.stop()
        if engine is not None:
            await engine.stop()
        await sim.stop()
        await asyncio.to_thread(stack.stop)
        if state_dir is None:
            await asyncio.to_thread(shutil.rmtree, work_dir, ignore_errors=True)
    ended = time.monotonic()
    report["timings"] = {
        "wall_time_s": round(ended - began, 1),
        "startup_s": round(started - began, 1),
        "workload_s": round(workload_done - started, 1),
        "shutdown_s": round(ended - workload_done, 1),
        "timeline_elapsed_s": driver.elapsed_s,
        # Settlement latency is the time the machine took: a timing, not an outcome.
        "latency_ms": report.pop("latency_ms"),
    }
    return report


@dataclass
class _Driver:
    """Submits the workload wave by wave and injects each fault between two waves."""

    callers: dict[str, Any]  # each caller's own connection, by caller id
    sim: SimStack
    engine: Engine
    tracker: RestTracker
    merchants: list[str]
    # Each agent's signing key, by caller id: agents sign their commands (ADR 0066).
    agent_keys: dict[str, Any] = field(default_factory=dict)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    marks: list[FaultMark] = field(default_factory=list)
    elapsed_s: list[float] = field(default_factory=list)
    waves: int = 0
    waves_not_at_rest: int = 0
    faults_not_seen: int = 0
    _began: float = 0.0

    async def run(
        self, workload: list[IntentSpec], schedule: tuple[FaultStep, ...], screen: Screen
    ) -> None:
        self._began = time.monotonic()
        pending = list(schedule)
        plan = waves(workload, breaks={step.after_intent for step in schedule})
        with screen.progress("workload", total=len(workload), unit="intents") as progress:
            for wave in plan:
                while pending and pending[0].after_intent <= wave[0].index:
                    step = pending.pop(0)
                    await self._inject(step)
                    progress.label = f"workload ({step.short()})"
                await self._submit_wave(wave, progress)
            for step in pending:  # scheduled after the last intent
                await self._inject(step)
        self.waves = len(plan)

    async def _submit_wave(self, wave: list[IntentSpec], progress: Progress) -> None:
        rest = list(wave)
        while rest and holding(self.sim.network):
            await self._submit(rest[:1])
            progress.advance(1)
            rest = rest[1:]
        if rest:
            await self._submit(rest)
            progress.advance(len(rest))

    async def _submit(self, wave: list[IntentSpec]) -> None:
        # Bodies (and invoices) are made in workload order, before anything is sent.
        bodies = [_command(self.sim, spec, self.merchants[spec.merchant_index]) for spec in wave]
        replies = await asyncio.gather(
            *(self._request(spec, body) for spec, body in zip(wave, bodies, strict=True))
        )
        accepted = []
        for spec, reply in zip(wave, replies, strict=True):
            self.replies[spec.idempotency_key] = reply
            if reply.get("ok"):
                accepted.append(reply["intent_id"])
        if not await self.tracker.wait_final(accepted, timeout_s=WAVE_TIMEOUT_S):
            # The run goes on, but is no longer reproducible; the report shows the open intents.
            self.waves_not_at_rest += 1
            log.warning(
                "demo_wave_not_at_rest", first_intent=wave[0].index,
                open=self.tracker.pending(accepted),
            )  # fmt: skip

    async def _request(self, spec: IntentSpec, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        key = self.agent_keys.get(spec.caller_id)
        msg = await self.callers[spec.caller_id].request(
            f"corridor.api.v1.intents.submit.{spec.caller_id}",
            data,
            timeout=SUBMIT_TIMEOUT_S,
            headers=sign_command(key, data) if key is not None else None,
        )
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def _inject(self, step: FaultStep) -> None:
        """Inject with nothing in flight, then wait until routing sees the fault."""
        position = await self.engine.store.head_position()
        region = self.sim.network.node(step.node).region
        assert region is not None, f"{step.node} is not one of our nodes"
        inject(step, self.sim.network)
        seen = await wait_until(
            lambda: seen_by_router(step, self.engine.health.health(region, step.node, _now_ms())),
            timeout_s=FAULT_SEEN_TIMEOUT_S,
        )
        if not seen:
            # The run goes on, but is no longer reproducible; the report says so.
            self.faults_not_seen += 1
            log.warning("demo_fault_not_seen_by_router", node=step.node, fault=step.kind)
        self.marks.append(FaultMark(step=step, region=region, log_position=position))
        self.elapsed_s.append(round(time.monotonic() - self._began, 1))
        log.info(
            "demo_fault_injected", fault=step.kind, node=step.node,
            after_intent=step.after_intent, log_position=position, seen_by_router=seen,
        )  # fmt: skip


@dataclass(frozen=True)
class _Credentials:
    """The demo's seed files; empty under NATS_URL, where CORRIDOR_CREDS serves for all."""

    callers: dict[str, Path] = field(default_factory=dict)
    executors: dict[str, Path] = field(default_factory=dict)
    operator: Path | None = None


def _make_credentials(work_dir: Path, targets: list[tuple[str, str]]) -> _Credentials:
    """A credential per caller (agents as agents), the operator, and each node's executor,
    made before the servers start so that nats-server admits them from the first moment."""
    from services.identity import nats_auth

    if os.environ.get("NATS_URL"):
        return _Credentials()
    callers = {}
    for caller_id, kind, _ in CALLERS:
        role = "agent" if kind == "agent" else "caller"
        callers[caller_id] = nats_auth.ensure(work_dir, role=role, ident=caller_id, kind=kind)  # type: ignore[arg-type]
    executors = {
        node: nats_auth.ensure(work_dir, role="executor", ident=node, region=region, node=node)
        for region, node in targets
    }
    operator = nats_auth.ensure(work_dir, role="operator", ident=OPERATOR_ID)
    return _Credentials(callers=callers, executors=executors, operator=operator)


async def _register_agent_keys(
    callers: dict[str, Any], operator_nc: Any, *, seed: int
) -> dict[str, Any]:
    """Each agent's signing key, proposed by its sponsor and approved by the operator, as
    events in the log (ADR 0068). The keys derive from the seed, so the same seed logs the same
    events (ADR 0030); they are a demo's keys, never anyone's real ones."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.bus import subjects
    from services.signing.port import b64url, key_id_for

    private: dict[str, Any] = {}
    for agent, sponsor in AGENT_SPONSORS.items():
        raw = hashlib.sha256(f"corridor-demo-agent-key:{seed}:{agent}".encode()).digest()
        key = Ed25519PrivateKey.from_private_bytes(raw)
        propose = {
            "type": "ProposeAgentKey", "version": 1, "agent_id": agent, "proposer_id": sponsor,
            "public_key": b64url(key.public_key().public_bytes_raw()),
        }  # fmt: skip
        await _ask(callers[sponsor], f"{subjects.AGENTS_API_PREFIX}.propose.{sponsor}", propose)
        key_id = key_id_for(key.public_key().public_bytes_raw())
        approve = {"type": "ApproveAgentKey", "version": 1, "key_id": key_id,
                   "approver_id": OPERATOR_ID}  # fmt: skip
        await _ask(operator_nc, f"{subjects.AGENTS_API_PREFIX}.approve.{OPERATOR_ID}", approve)
        private[agent] = key
    return private


async def _ask(nc: Any, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=SUBMIT_TIMEOUT_S)
    reply: dict[str, Any] = json.loads(msg.data)
    if not reply.get("ok"):
        raise RuntimeError(f"the engine refused {subject}: {reply.get('error')}")
    return reply


def _report(
    stored: list[Any], sim: SimStack, driver: _Driver, *, secret: bytes, attempts_max: int
) -> dict[str, Any]:
    events = [to_recorded(e) for e in stored]
    dicts = [
        {"type": e.type, "version": e.version, "stream_id": e.stream_id, "position": e.position,
         "recorded_at_ms": e.recorded_at_ms, "data": e.data}
        for e in events
    ]  # fmt: skip
    report = build_pilot_metrics(dicts)
    report.update(_ground_truth(sim, events, secret=secret, attempts_max=attempts_max))
    replies = driver.replies.values()
    report.update(
        submitted_ok=sum(1 for r in replies if r.get("ok")),
        refused_at_submit=dict(Counter(r["error"]["code"] for r in replies if not r.get("ok"))),
        waves=driver.waves,
        waves_not_at_rest=driver.waves_not_at_rest,
        faults_not_seen_by_router=driver.faults_not_seen,
        faults=[
            {"after_intent": m.step.after_intent, "kind": m.step.kind, "node": m.step.node}
            for m in driver.marks
        ],
        timeline=build_timeline(dicts, driver.marks, intents=report["intents"]),
        log_position_at_end=events[-1].position if events else 0,
    )
    return report


def _write_events(path: Path, stored: list[Any]) -> None:
    import msgspec

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.writelines(msgspec.json.encode(to_recorded(e)) + b"\n" for e in stored)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _command(sim: SimStack, spec: IntentSpec, merchant: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "SubmitPaymentIntent",
        "version": 1,
        "idempotency_key": spec.idempotency_key,
        "caller": {"id": spec.caller_id, "kind": spec.caller_kind},
        "corridor": spec.corridor,
        "amount_msat": spec.amount_msat,
        "max_fee_msat": spec.max_fee_msat,
        "metadata": {"pilot": "true", "merchant": merchant},
    }
    if spec.keysend:
        body["destination"] = sim.network.node(merchant).pubkey
    else:
        invoice = sim.network.create_invoice(
            merchant, spec.amount_msat, f"pilot {spec.index}", expiry_s=3600
        )
        body["payment_request"] = invoice.bolt11
    return body


async def _all_events(engine: Engine) -> list[Any]:
    out: list[Any] = []
    async for batch in engine.store.pages():
        out.extend(batch)
    return out


def _ground_truth(
    sim: SimStack, events: list[Any], *, secret: bytes, attempts_max: int
) -> dict[str, Any]:
    """Double payments counted from the network's own ledger, not from our state."""
    hashes_of: dict[str, set[str]] = {}
    for event in events:
        if event.type == "IntentReceived":
            invoice = event.data.get("invoice")
            own = {invoice["payment_hash"]} if invoice else set()
            if event.data.get("destination"):
                own |= {keysend_preimage(secret, event.stream_id, a)[1]
                        for a in range(1, attempts_max + 1)}  # fmt: skip
            hashes_of[event.stream_id] = own
    succeeded = [p for p in sim.network.payments() if p.status == "succeeded"]
    by_hash = Counter(p.payment_hash for p in succeeded)
    intent_of = {h: intent for intent, hs in hashes_of.items() for h in hs}
    per_intent = Counter(
        intent_of[p.payment_hash] for p in succeeded if p.payment_hash in intent_of
    )
    settled_ids = {e.stream_id for e in events if e.type == "IntentSettled"}
    return {
        "double_payments": sum(n - 1 for n in by_hash.values() if n > 1)
        + sum(n - 1 for n in per_intent.values() if n > 1),
        "network_payments": {
            "succeeded": len(succeeded),
            "failed": sum(1 for p in sim.network.payments() if p.status == "failed"),
        },
        "paid_but_not_settled": sorted(i for i in per_intent if i not in settled_ids),
    }  # fmt: skip
