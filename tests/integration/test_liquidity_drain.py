"""The done-when test of issue 18's planner (ADR 0243): a corridor load that drains one region
stays healthy with the planner in auto mode and breaks without it, with the fees spent within
the day's budget, and no rebalance paid twice. The moves are rebalances, an intent kind of their
own (ADR 0244): requested with the planner's explanation, their fees reserved and released on
the source region's budget stream of the day (ADR 0245), paid by the source node's executor as
a keysend with the rebalance's own preimage.

Everything real but the clock of the load: nats-server, PostgreSQL, the engine, the executors,
the simulated network served by its LND gRPC servers, reached through the LND adapter. The load
is sequential (each payment ends before the next), so both runs see the same balances at each
step: the only difference is the planner's round before each payment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from nats.aio.client import Client
from nats.aio.msg import Msg

from projections.liquidity import LiquidityBook
from schemas.rebalance_messages import budget_day, budget_stream_id
from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.domain.intent.transitions import TERMINAL_STATUSES
from services.domain.liquidity.planner import PlanRules, plan
from services.domain.liquidity.targets import Target, Targets
from services.domain.rebalance import FINAL_STATUSES
from services.executor.keysend import SECRET_FILE_NAME, keysend_preimage, load_or_create_secret
from services.liquidity.feed import now_ms
from services.liquidity.rebalance import (
    budget_used_msat,
    idempotency_key,
    planner_inputs,
    request_body,
)
from services.settings import Settings
from services.sim.lnd_server import LndNodeServer, start_lnd_node_server
from services.sim.network import SimNetwork
from services.sim.topology import load_topology
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_executor import make_executor

SEED = 18
TOPOLOGY = Path(__file__).parents[2] / "services/sim/topologies/drain.yaml"
POLICY = Path(__file__).parents[2] / "services/policy/default.yaml"
OURS = (("us", "us-lnd"), ("eu", "eu-lnd"))
MERCHANT = "merchant-01"
PAYMENTS = 10
AMOUNT_MSAT = 5_000_000
MAX_FEE_MSAT = 50_000
PLANNER = "liquidity-planner"
TARGETS = Targets(default=Target(local_ratio_min_ppm=400_000))
BUDGET_MSAT = 60_000
RULES = PlanRules(
    fee_budget_msat_per_day=BUDGET_MSAT, fee_ppm_estimate=1_000, fee_base_msat_estimate=2_000,
    move_min_msat=1_000_000, move_max_msat=10_000_000,
)  # fmt: skip
ROUND_MS = 1  # every round is its own: the load runs many rounds in one second


@contextlib.asynccontextmanager
async def drain_stack(tmp_path: Path, nats_url: str, database_url: str) -> AsyncIterator[Any]:
    network = SimNetwork.from_topology(load_topology(TOPOLOGY), seed=SEED)
    servers: list[LndNodeServer] = []
    nodes = []
    for _, name in OURS:
        server = await start_lnd_node_server(network, name, state_dir=tmp_path / "nodes")
        servers.append(server)
        node = network.node(name)
        nodes.append({"name": name, "role": node.role, "region": node.region,
                      "implementation": node.implementation, "endpoint": server.endpoint,
                      "pubkey": node.pubkey})  # fmt: skip
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": nodes}))
    doc = yaml.safe_load(POLICY.read_text())
    doc["corridors"]["eu-us"] = {"amount_msat_min": 1_000, "amount_msat_max": 1_000_000_000}
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(doc))
    settings = Settings(
        relay_poll_s=0.2, state_dir=tmp_path, policy_file=policy_file,
        # The customers' corridor pays from us only (no fail-over: a dry us fails the load);
        # eu-us makes eu's node known (and keysend-capable) to the planner.
        corridors={"us-eu": ["us/us-lnd"], "eu-us": ["eu/eu-lnd"]},
        # The engine enforces the same day's budget as the planner plans with (ADR 0245).
        liquidity_fee_budget_msat_per_day=BUDGET_MSAT,
    )  # fmt: skip
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    await wait_for(engine.relay.leader.is_set, what="the relay to lead")
    tasks = []
    executors = []
    for region, name in OURS:
        executor = make_executor(tmp_path, nats_url, region, name, f"{name}-1")
        executors.append(executor)
        tasks.append(asyncio.create_task(executor.run(), name=name))
    try:
        yield engine, network
    finally:
        for executor in executors:
            executor.stop()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        await engine.stop()
        for server in servers:
            await server.stop()
        await network.aclose()


async def _request(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def _finish(engine: Engine, intent_id: str) -> Any:
    ended = {str(s) for s in TERMINAL_STATUSES} | {str(s) for s in FINAL_STATUSES}

    async def done() -> bool:
        return getattr(await engine.processor.view(intent_id), "state", None) in ended

    await wait_for(done, timeout_s=20, what=f"intent {intent_id} to end")
    return await engine.processor.view(intent_id)


async def _fresh_view(book: LiquidityBook) -> dict[str, Any]:
    """The view once both nodes reported after this moment: balances after the last payment."""
    mark_ms = now_ms()

    def fresh() -> bool:
        at = now_ms()
        nodes = book.view(at)["nodes"]
        return len(nodes) == len(OURS) and all(
            at - n["data_age_ms"] > mark_ms and n["reachable"] for n in nodes
        )

    await wait_for(fresh, what="fresh channel snapshots")
    return book.view(now_ms(), TARGETS)


async def _run_load(
    engine: Engine, nc: Client, network: SimNetwork, *, planner: bool
) -> tuple[list[str], list[Any]]:
    book = LiquidityBook(interval_ms=200)

    async def heard(msg: Msg) -> None:
        book.receive(msg.subject, msg.data, received_at_ms=now_ms())

    sub = await nc.subscribe(subjects.LIQUIDITY_WILDCARD, cb=heard)
    corridors = await _request(
        nc, subjects.POLICY_CORRIDORS, {"type": "ListCorridors", "version": 1}
    )
    merchant = network.node(MERCHANT).pubkey
    outcomes: list[str] = []
    rebalances: list[Any] = []
    try:
        for i in range(PAYMENTS):
            if planner:
                await _plan_round(engine, nc, book, corridors, rebalances)
            command = submit(key=f"load-{i}", amount_msat=AMOUNT_MSAT,
                             max_fee_msat=MAX_FEE_MSAT, destination=merchant,
                             corridor="us-eu")  # fmt: skip
            reply = await _request(nc, f"{subjects.API_PREFIX}.submit.alice", command)
            assert reply["ok"], reply
            outcomes.append((await _finish(engine, reply["intent_id"])).state)
    finally:
        await sub.unsubscribe()
    return outcomes, rebalances


async def _plan_round(
    engine: Engine,
    nc: Client,
    book: LiquidityBook,
    corridors: dict[str, Any],
    rebalances: list[_Rebalance],
) -> None:
    """What `corridor liquidity plan --auto` does, one round: plan on fresh figures and the
    budget the engine's log holds, request each move, and (the test's sequencing) wait for it
    to end."""
    view = await _fresh_view(book)
    regions, nodes = planner_inputs(view, corridors)
    spent = {r.region: await _budget_used(engine, r.region) for r in regions}
    result = plan(regions, nodes, TARGETS, RULES, spent_today_msat=spent)
    for proposal in result.proposals:
        key = idempotency_key(proposal, now_ms=now_ms(), round_ms=ROUND_MS, dry_run=False)
        body = request_body(proposal, caller_id=PLANNER, caller_kind="service", key=key,
                            dry_run=False)  # fmt: skip
        reply = await _request(nc, REBALANCE_SUBJECT, body)
        assert reply["ok"], reply
        again = await _request(nc, REBALANCE_SUBJECT, body)
        assert again["intent_id"] == reply["intent_id"] and again["duplicate"]  # same key
        finished = await _finish(engine, reply["intent_id"])
        rebalances.append(_Rebalance(reply["intent_id"], body, finished))


REBALANCE_SUBJECT = f"{subjects.API_PREFIX}.rebalance.{PLANNER}"


async def _budget_stream(engine: Engine, region: str) -> list[Any]:
    view = await engine.processor.view(budget_stream_id(region, budget_day(now_ms())))
    return list(getattr(view, "events", []))


async def _budget_used(engine: Engine, region: str) -> int:
    return budget_used_msat(
        {"type": e.type, "data": e.data} for e in await _budget_stream(engine, region)
    )


class _Rebalance:
    def __init__(self, rebalance_id: str, body: dict[str, Any], view: Any) -> None:
        self.rebalance_id = rebalance_id
        self.body = body
        self.state: str = view.state
        self.events = view.events
        succeeded = [e for e in view.events if e.type == "RebalanceSucceeded"]
        self.fee_msat: int | None = succeeded[0].data["fee_msat"] if succeeded else None


async def test_a_drained_region_fails_its_load_without_the_planner(
    tmp_path: Path, nats_url: str, database_url: str, nc: Client
) -> None:
    async with drain_stack(tmp_path, nats_url, database_url) as (engine, network):
        outcomes, _ = await _run_load(engine, nc, network, planner=False)
    assert outcomes[:3] == ["settled"] * 3
    assert outcomes.count("failed") >= PAYMENTS - 4, outcomes


async def test_the_planner_in_auto_mode_keeps_the_load_healthy_within_budget(
    tmp_path: Path, nats_url: str, database_url: str, nc: Client
) -> None:
    async with drain_stack(tmp_path, nats_url, database_url) as (engine, network):
        outcomes, rebalances = await _run_load(engine, nc, network, planner=True)
        secret = load_or_create_secret(tmp_path / SECRET_FILE_NAME)
        hashes = [keysend_preimage(secret, r.rebalance_id, 1)[1] for r in rebalances]
        attempts = {h: [p.status for p in network.payments() if p.payment_hash == h]
                    for h in hashes}  # fmt: skip
        budget = await _budget_stream(engine, "eu")
    assert outcomes == ["settled"] * PAYMENTS, outcomes
    assert rebalances and all(r.state == "succeeded" for r in rebalances)
    assert all(r.rebalance_id.startswith("rbl-") for r in rebalances)
    assert all((r.body["source_region"], r.body["target_region"]) == ("eu", "us")
               for r in rebalances)  # fmt: skip
    for r in rebalances:  # each move's explanation and its order are in its own stream
        types = [e.type for e in r.events]
        assert types == ["RebalanceRequested", "RebalanceDispatched", "RebalanceInFlight",
                         "RebalanceSucceeded"] or types == ["RebalanceRequested",
                         "RebalanceDispatched", "RebalanceSucceeded"], types  # fmt: skip
        assert r.events[0].data["explanation"]["reason"] in ("local_ratio_low", "runs_dry_soon")
    fees = [r.fee_msat for r in rebalances]
    assert all(f is not None and f > 0 for f in fees) and sum(fees) <= BUDGET_MSAT, fees
    assert all(a == ["succeeded"] for a in attempts.values()), attempts
    # The engine's own budget stream: one reservation and one release per move, the spent
    # fees are the paid ones, and the day never held more than its budget.
    reserved = [e.data for e in budget if e.type == "RebalanceBudgetReserved"]
    released = [e.data for e in budget if e.type == "RebalanceBudgetReleased"]
    assert (
        sorted(d["rebalance_id"] for d in reserved)
        == sorted(r.rebalance_id for r in rebalances)
        == sorted(d["rebalance_id"] for d in released)
    )
    assert sum(d["spent_msat"] for d in released) == sum(fees)
    assert all(d["used_before_msat"] + d["reserved_msat"] <= BUDGET_MSAT for d in reserved)


async def test_a_rebalance_whose_executor_is_killed_mid_payment_pays_once(
    tmp_path: Path, nats_url: str, database_url: str, nc: Client
) -> None:
    async with drain_stack(tmp_path, nats_url, database_url) as (engine, network):
        book = LiquidityBook(interval_ms=200)

        async def heard(msg: Msg) -> None:
            book.receive(msg.subject, msg.data, received_at_ms=now_ms())

        sub = await nc.subscribe(subjects.LIQUIDITY_WILDCARD, cb=heard)
        corridors = await _request(
            nc, subjects.POLICY_CORRIDORS, {"type": "ListCorridors", "version": 1}
        )
        view = await _fresh_view(book)
        await sub.unsubscribe()
        regions, nodes = planner_inputs(view, corridors)
        (proposal,) = plan(regions, nodes, TARGETS, RULES, spent_today_msat={}).proposals
        # A dry run first: the proposal is recorded with its explanation, nothing is sent.
        dry = request_body(proposal, caller_id=PLANNER, caller_kind="service", key="rb-dry",
                           dry_run=True)  # fmt: skip
        proposed = await _request(nc, REBALANCE_SUBJECT, dry)
        assert proposed["ok"] and proposed["state"] == "proposed", proposed
        proposed_view = await engine.processor.view(proposed["intent_id"])
        assert [e.type for e in proposed_view.events] == ["RebalanceProposed"]
        assert proposed_view.events[0].data["explanation"]["summary"].startswith("us: ")
        body = request_body(proposal, caller_id=PLANNER, caller_kind="service", key="rb-kill",
                            dry_run=False)  # fmt: skip
        # The target holds the HTLC: the source's send is on the wire when its worker dies.
        network.faults.drop_resolution(node="us-lnd")
        reply = await _request(nc, REBALANCE_SUBJECT, body)
        assert reply["ok"], reply
        intent_id = reply["intent_id"]
        secret = load_or_create_secret(tmp_path / SECRET_FILE_NAME)
        _, payment_hash = keysend_preimage(secret, intent_id, 1)

        def attempts() -> list[str]:
            return [p.status for p in network.payments() if p.payment_hash == payment_hash]

        await wait_for(lambda: len(attempts()) == 1, what="the rebalance's HTLC to be held")
        eu_task = next(t for t in asyncio.all_tasks() if t.get_name() == "eu-lnd")
        eu_task.cancel()  # killed: no ack, no goodbye
        with contextlib.suppress(asyncio.CancelledError):
            await eu_task
        restarted = make_executor(tmp_path, nats_url, "eu", "eu-lnd", "eu-lnd-1")
        task = asyncio.create_task(restarted.run(), name="eu-lnd-restarted")
        try:

            async def in_flight() -> bool:
                return getattr(await engine.processor.view(intent_id), "state", None) == "in_flight"

            await wait_for(in_flight, timeout_s=20, what="the restart to find the node's record")
            network.faults.release_dropped()
            finished = await _finish(engine, intent_id)
            again = await _request(nc, REBALANCE_SUBJECT, body)
        finally:
            restarted.stop()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
            await restarted.close_node()
        assert finished.state == "succeeded"
        assert again["intent_id"] == intent_id  # requesting the move again is the same one
        assert attempts() == ["succeeded"]  # one payment on the network, however often asked
        assert [p.payment_hash for p in network.payments()].count(payment_hash) == 1
        assert [p for p in network.payments() if p.status == "succeeded"
                and p.payment_hash != payment_hash] == []  # nothing else paid  # fmt: skip
        events = [e.type for e in finished.events]
        assert events.count("RebalanceSucceeded") == 1 and "RebalanceInFlight" in events
