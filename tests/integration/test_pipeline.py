"""The whole pipeline over real NATS and PostgreSQL: engine, region executors (one per
(region, node) the corridors use) and the full simulated network served over LND gRPC and CLN
JSON-RPC. The network's own ledger is the ground truth for what was paid."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from projections.exceptions import build as build_exceptions
from services.bootstrap import Engine, bootstrap
from services.cli.endpoints import write_endpoints
from services.executor.fleet import ExecutorFleet, targets_from_corridors
from services.executor.limits import ExecutorLimits
from services.settings import Settings
from services.sim.runner import SimStack
from tests.conftest import wait_for
from tests.factories import submit

FAST = ExecutorLimits(
    ack_wait_s=1.0, heartbeat_s=0.25, fetch_wait_s=0.2, redelivery_delay_s_first=0.1,
    redelivery_delay_s_max=0.5, engine_backoff_s_first=0.05, node_backoff_s_first=0.05,
    track_poll_s=0.1, health_interval_s=0.2, stop_grace_s=2.0,
)  # fmt: skip


@dataclass
class Pipeline:
    engine: Engine
    sim: SimStack
    nc: Client

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        caller = body["caller"]["id"]
        msg = await self.nc.request(
            f"corridor.api.v1.intents.submit.{caller}", json.dumps(body).encode(), timeout=10
        )
        return json.loads(msg.data)

    async def events(self, intent_id: str) -> list[Any]:
        return await self.engine.store.read_stream(intent_id)

    async def state(self, intent_id: str) -> str:
        reply = await self.engine.processor.status(intent_id)
        return str(getattr(reply, "state", "missing"))

    async def wait_state(self, intent_id: str, state: str, timeout_s: float = 15.0) -> None:
        async def reached() -> bool:
            return await self.state(intent_id) == state

        try:
            await wait_for(reached, timeout_s=timeout_s, what=f"{intent_id} to be {state}")
        except AssertionError:
            history = [(e.type, e.payload) for e in await self.events(intent_id)]
            raise AssertionError(f"{intent_id} not {state}; history: {history}") from None

    def invoice(self, merchant: str, amount_msat: int) -> tuple[str, str]:
        invoice = self.sim.network.create_invoice(merchant, amount_msat, "test", 3600)
        assert invoice.bolt11 is not None
        return invoice.bolt11, invoice.payment_hash

    def succeeded(self, payment_hash: str) -> list[Any]:
        return [p for p in self.sim.network.payments()
                if p.payment_hash == payment_hash and p.status == "succeeded"]  # fmt: skip


@pytest.fixture
async def pipeline(
    tmp_path: Path, nats_url: str, database_url: str, nc: Client
) -> AsyncIterator[Pipeline]:
    settings = Settings(
        relay_poll_s=0.2, health_interval_s=0.2, pay_timeout_s=5, state_dir=tmp_path
    )
    sim = SimStack(state_dir=tmp_path / "sim", seed=11)
    await sim.start()
    write_endpoints(tmp_path, {"nats_url": nats_url, **sim.endpoints()})
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    fleet = ExecutorFleet(
        nats_url=nats_url, state_dir=tmp_path,
        targets=targets_from_corridors(settings.corridors), limits=FAST,
    )  # fmt: skip
    await fleet.start()
    try:
        yield Pipeline(engine=engine, sim=sim, nc=nc)
    finally:
        await fleet.stop()
        await engine.stop()
        await sim.stop()


async def test_approval_then_settle_and_reject(pipeline: Pipeline) -> None:
    bolt11, payment_hash = pipeline.invoice("merchant-02", 5_000_000)
    agent = submit(key="ap-1", caller_id="bot", kind="agent", amount_msat=5_000_000,
                   max_fee_msat=50_000, payment_request=bolt11, destination=None)  # fmt: skip
    reply = await pipeline.submit(agent)
    assert reply["state"] == "awaiting_approval", reply
    approve = {"type": "ApprovePaymentIntent", "version": 1, "intent_id": reply["intent_id"],
               "operator_id": "op"}  # fmt: skip
    msg = await pipeline.nc.request(
        "corridor.api.v1.intents.approve.op", json.dumps(approve).encode(), timeout=10
    )
    assert json.loads(msg.data)["ok"]
    await pipeline.wait_state(reply["intent_id"], "settled")
    assert len(pipeline.succeeded(payment_hash)) == 1

    bolt11, payment_hash = pipeline.invoice("merchant-03", 5_000_000)
    other = {**agent, "idempotency_key": "ap-2", "payment_request": bolt11}
    reply = await pipeline.submit(other)
    reject = {"type": "RejectPaymentIntent", "version": 1, "intent_id": reply["intent_id"],
              "operator_id": "op", "reason": "unknown payee"}  # fmt: skip
    msg = await pipeline.nc.request(
        "corridor.api.v1.intents.reject.op", json.dumps(reject).encode(), timeout=10
    )
    assert json.loads(msg.data)["state"] == "rejected"
    assert pipeline.succeeded(payment_hash) == []


async def test_region_outage_routes_to_the_next_region(pipeline: Pipeline) -> None:
    pipeline.sim.network.faults.set_offline("us-lnd")

    def us_lnd_unhealthy() -> bool:
        health = pipeline.engine.health.health("us", "us-lnd", pipeline_now_ms())
        return health is not None and not health.healthy

    await wait_for(us_lnd_unhealthy, what="the executor to report us-lnd down")
    bolt11, payment_hash = pipeline.invoice("merchant-04", 80_000)
    reply = await pipeline.submit(submit(key="out-1", payment_request=bolt11, destination=None,
                                         amount_msat=80_000, max_fee_msat=10_000))  # fmt: skip
    await pipeline.wait_state(reply["intent_id"], "settled")
    routed = next(e for e in await pipeline.events(reply["intent_id"]) if e.type == "IntentRouted")
    assert routed.payload["region"] == "eu"
    assert {"region": "us", "node": "us-lnd", "reason": "unhealthy"} in routed.payload["rejected"]
    [paid] = pipeline.succeeded(payment_hash)
    assert paid.origin == "eu-lnd"


async def test_liquidity_depletion_falls_back_by_proof_or_by_health(pipeline: Pipeline) -> None:
    """Either path is right, depending on whether the executor's next health report (every
    0.2 s) lands before the intent is routed: a failure proven by the node's record and a
    re-route, or a route that skips the drained node up front. Both must pay exactly once."""
    network = pipeline.sim.network
    for channel in network.channels_of("us-lnd"):
        network.faults.drain_channel(channel.channel_id, toward=channel.peer)
    bolt11, payment_hash = pipeline.invoice("merchant-05", 90_000)
    reply = await pipeline.submit(submit(key="liq-1", payment_request=bolt11, destination=None,
                                         amount_msat=90_000, max_fee_msat=10_000))  # fmt: skip
    await pipeline.wait_state(reply["intent_id"], "settled")
    events = await pipeline.events(reply["intent_id"])
    attempts = [p for p in network.payments() if p.payment_hash == payment_hash]
    [paid] = [p for p in attempts if p.status == "succeeded"]
    assert paid.origin != "us-lnd"
    first_route = next(e for e in events if e.type == "IntentRouted")
    if first_route.payload["node"] == "us-lnd":
        failed = next(e for e in events if e.type == "PaymentAttemptFailed")
        assert failed.payload["confirmed_not_paid"] is True
        assert [p.status for p in attempts] == ["failed", "succeeded"]
    else:
        assert {"region": "us", "node": "us-lnd", "reason": "insufficient_liquidity"} in (
            first_route.payload["rejected"]
        )
        assert [p.status for p in attempts] == ["succeeded"]


async def test_health_steers_around_a_drained_node(pipeline: Pipeline) -> None:
    network = pipeline.sim.network
    for channel in network.channels_of("us-lnd"):
        network.faults.drain_channel(channel.channel_id, toward=channel.peer)

    def drained_reported() -> bool:
        health = pipeline.engine.health.health("us", "us-lnd", pipeline_now_ms())
        return health is not None and (health.outbound_msat or 0) < 90_000

    await wait_for(drained_reported, what="the executor to report us-lnd's empty channels")
    bolt11, payment_hash = pipeline.invoice("merchant-07", 90_000)
    reply = await pipeline.submit(submit(key="liq-2", payment_request=bolt11, destination=None,
                                         amount_msat=90_000, max_fee_msat=10_000))  # fmt: skip
    await pipeline.wait_state(reply["intent_id"], "settled")
    routed = next(e for e in await pipeline.events(reply["intent_id"]) if e.type == "IntentRouted")
    assert routed.payload["node"] != "us-lnd"
    assert {"region": "us", "node": "us-lnd", "reason": "insufficient_liquidity"} in (
        routed.payload["rejected"]
    )
    assert [p.origin for p in pipeline.succeeded(payment_hash)] == [routed.payload["node"]]


async def test_payment_in_doubt_goes_to_the_exception_queue_and_is_never_resent(
    pipeline: Pipeline,
) -> None:
    network = pipeline.sim.network
    network.faults.drop_resolution(node="us-lnd", count=1)  # the HTLC stays locked
    bolt11, payment_hash = pipeline.invoice("merchant-06", 70_000)
    reply = await pipeline.submit(submit(key="doubt-1", payment_request=bolt11, destination=None,
                                         amount_msat=70_000, max_fee_msat=10_000))  # fmt: skip
    intent_id = reply["intent_id"]
    await pipeline.wait_state(intent_id, "in_flight")

    async def queued() -> list[dict[str, Any]]:
        events = [
            {"type": e.type, "version": e.schema_version, "stream_id": e.stream_id,
             "recorded_at_ms": e.recorded_at_ms, "data": e.payload}
            for e in await pipeline.events(intent_id)
        ]  # fmt: skip
        return build_exceptions(events, now_ms=pipeline_now_ms(), stuck_after_ms=0)

    [row] = await queued()
    assert row["kind"] == "in_doubt" and row["node"] == "us-lnd"
    # While in doubt nothing is re-routed: one attempt, on one node, still in flight.
    assert [p.status for p in network.payments() if p.payment_hash == payment_hash] == ["in_flight"]
    network.faults.release_dropped()
    await pipeline.wait_state(intent_id, "settled")
    assert await queued() == []
    assert len(pipeline.succeeded(payment_hash)) == 1


def pipeline_now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000
