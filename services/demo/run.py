"""`corridor demo`: the whole engine on embedded defaults, a seeded pilot workload, a report.

Starts NATS, PostgreSQL, the engine, the simulated 3-region network and one executor per
(region, node); submits the workload across three corridors with a scripted operator for the
approval tier; drains the liquidity of one node a third of the way through and takes a region's
primary node offline halfway; then reports from the event log and the network's own ledger.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

from projections.pilot_metrics import build as build_pilot_metrics
from services.bootstrap import bootstrap
from services.bus.jetstream import connect
from services.cli.endpoints import write_endpoints
from services.demo.operator import ScriptedOperator
from services.demo.workload import IntentSpec, build_workload
from services.devstack import DevStack
from services.engine.event_codec import to_recorded
from services.executor.fleet import ExecutorFleet, targets_from_corridors
from services.executor.keysend import SECRET_FILE_NAME, keysend_preimage, load_or_create_secret
from services.executor.limits import ExecutorLimits
from services.settings import Settings
from services.sim.runner import SimStack

log = structlog.get_logger("corridor.demo")

SUBMIT_WINDOW = 32  # intents in flight from the upstream system at once
# 300 intents over about 5 s: the region outage (from 50 % to 80 % of the workload) then lasts
# longer than the executors' health interval, so routing sees it.
SUBMIT_RATE_PER_S = 60.0
SETTLE_TIMEOUT_S = 75.0
OUTAGE_NODE = "us-lnd"
DRAINED_NODE = "eu-lnd"
_TERMINAL = ("IntentSettled", "IntentFailed", "IntentCancelled", "IntentExpired", "IntentRejected")


async def run_demo(*, seed: int, intents: int, state_dir: Path | None = None) -> dict[str, Any]:
    began = time.monotonic()
    work_dir = state_dir or Path(tempfile.mkdtemp(prefix="corridor-demo-"))
    settings = Settings(health_interval_s=1.0, relay_poll_s=0.2, pay_timeout_s=20)
    stack = DevStack(work_dir / "servers")
    await asyncio.to_thread(stack.start)
    sim = SimStack(state_dir=work_dir / "sim", seed=seed)
    engine = fleet = operator = nc = None
    try:
        await sim.start()
        write_endpoints(
            work_dir, {"nats_url": stack.nats_url, "database_url": stack.database_url,
                       **sim.endpoints()},
        )  # fmt: skip
        engine = await bootstrap(settings, nats_url=stack.nats_url, database_url=stack.database_url)
        await engine.start()
        fleet = ExecutorFleet(
            nats_url=stack.nats_url, state_dir=work_dir,
            targets=targets_from_corridors(settings.corridors),
            limits=ExecutorLimits(health_interval_s=1.0),
        )  # fmt: skip
        await fleet.start()
        nc = await connect(stack.nats_url, name="corridor-demo")
        operator = ScriptedOperator(nc, seed=seed)
        await operator.start()

        merchants = sorted(n.name for n in sim.network.nodes.values() if n.role == "merchant")
        workload = build_workload(seed, intents, len(merchants))
        replies = await _submit_all(nc, sim, workload, merchants)
        await _wait_until_final(engine, replies, timeout_s=SETTLE_TIMEOUT_S)

        log_events = [to_recorded(e) for e in await _all_events(engine)]
        report = build_pilot_metrics(msgspec_to_dicts(log_events))
        secret = load_or_create_secret(work_dir / SECRET_FILE_NAME)
        report.update(
            _ground_truth(sim, log_events, secret=secret, attempts_max=settings.attempts_max)
        )
        report.update(
            seed=seed,
            submitted_ok=sum(1 for r in replies.values() if r.get("ok")),
            refused_at_submit=dict(
                Counter(r["error"]["code"] for r in replies.values() if not r.get("ok"))
            ),
            faults={"drained": DRAINED_NODE, "offline_then_restored": OUTAGE_NODE},
            operator={"approved": operator.approved, "rejected": operator.rejected},
            wall_time_s=round(time.monotonic() - began, 1),
        )
        return report
    finally:
        if operator is not None:
            await operator.stop()
        if nc is not None:
            await nc.close()
        if fleet is not None:
            await fleet.stop()
        if engine is not None:
            await engine.stop()
        await sim.stop()
        await asyncio.to_thread(stack.stop)


def msgspec_to_dicts(events: list[Any]) -> list[dict[str, Any]]:
    return [
        {"type": e.type, "stream_id": e.stream_id, "recorded_at_ms": e.recorded_at_ms,
         "data": e.data}
        for e in events
    ]  # fmt: skip


async def _submit_all(
    nc: Any, sim: SimStack, workload: list[IntentSpec], merchants: list[str]
) -> dict[str, dict[str, Any]]:
    slots = asyncio.Semaphore(SUBMIT_WINDOW)
    replies: dict[str, dict[str, Any]] = {}
    count = len(workload)
    third, half, outage_end = count // 3, count // 2, count * 4 // 5
    began = time.monotonic()

    async def one(spec: IntentSpec) -> None:
        async with slots:
            body = _command(sim, spec, merchants[spec.merchant_index])
            msg = await nc.request(
                f"corridor.api.v1.intents.submit.{spec.caller_id}",
                json.dumps(body).encode(),
                timeout=30,
            )
            replies[spec.idempotency_key] = json.loads(msg.data)

    tasks = []
    for spec in workload:
        if spec.index == third:
            _drain(sim, DRAINED_NODE)
        if spec.index == half:
            sim.network.faults.set_offline(OUTAGE_NODE)
            log.info("demo_outage_started", node=OUTAGE_NODE)
        if spec.index == outage_end:
            sim.network.faults.set_offline(OUTAGE_NODE, offline=False)
            log.info("demo_outage_ended", node=OUTAGE_NODE)
        tasks.append(asyncio.create_task(one(spec)))
        # Upstream systems submit over time: pace the workload so the faults last a while.
        delay_s = began + (spec.index + 1) / SUBMIT_RATE_PER_S - time.monotonic()
        await asyncio.sleep(max(0.0, delay_s))
    await asyncio.gather(*tasks)
    sim.network.faults.set_offline(OUTAGE_NODE, offline=False)
    return replies


def _drain(sim: SimStack, node: str) -> None:
    for channel in sim.network.channels_of(node):
        sim.network.faults.drain_channel(channel.channel_id, toward=channel.peer)
    log.info("demo_liquidity_drained", node=node)


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


async def _wait_until_final(
    engine: Any, replies: dict[str, dict[str, Any]], *, timeout_s: float
) -> None:
    expected = {r["intent_id"] for r in replies.values() if r.get("ok")}
    deadline = time.monotonic() + timeout_s
    while True:
        async with engine.store.pool.acquire() as conn:
            done = await conn.fetchval(
                "SELECT count(DISTINCT stream_id) FROM events WHERE type = ANY($1::text[])",
                list(_TERMINAL),
            )
        if done >= len(expected) or time.monotonic() > deadline:
            if done < len(expected):
                log.warning("demo_not_all_final", final=done, expected=len(expected))
            return
        await asyncio.sleep(0.25)  # poll interval while waiting on the condition above


async def _all_events(engine: Any) -> list[Any]:
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
