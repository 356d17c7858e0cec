"""Rebalances through the real engine (ADR 0244, 0245): requests over NATS, the decision in
PostgreSQL, and the day's fee budget per source region enforced by the engine from its log,
so a restarted engine (or a second one) judges a move against every reservation before it.

No executor runs here: the moves stay dispatched, so their whole max fees stay reserved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from schemas.rebalance_messages import budget_day, budget_stream_id
from services.bootstrap import Engine
from services.executor.channel_snapshot import ChannelSnapshot, snapshot_subject
from services.liquidity.feed import now_ms
from services.liquidity.rebalance import budget_used_msat
from tests.conftest import wait_for
from tests.integration.test_executor import signing_engine

PLANNER = "liquidity-planner"
PUBKEY = "02" + "ab" * 32
BUDGET_MSAT = 100_000  # the default liquidity_fee_budget_msat_per_day


def command(key: str, *, max_fee_msat: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "RequestRebalance", "version": 1, "idempotency_key": key,
        "caller": {"id": PLANNER, "kind": "service"}, "source_region": "eu",
        "source_node": "eu-lnd", "target_region": "us", "target_node": "us-lnd",
        "destination": PUBKEY, "amount_msat": 5_000_000, "max_fee_msat": max_fee_msat,
        "explanation": {"reason": "local_ratio_low"},
    } | fields  # fmt: skip


async def announce(
    nc: Client, engine: Engine, region: str = "us", node: str = "us-lnd", pubkey: str = PUBKEY
) -> None:
    """A channel snapshot as ``node``'s executor publishes it: where the engine learns the
    node's pubkey (ADR 0249). The test's engine credential stands in for the executor's."""
    snapshot = ChannelSnapshot(
        node=node, region=region, executor_id=f"{node}-t", observed_at_ms=now_ms(),
        reachable=True, channels=(), channels_total=0, node_pubkey=pubkey,
    )  # fmt: skip
    await nc.publish(snapshot_subject(region, node), msgspec.json.encode(snapshot))

    def known() -> bool:
        return engine.processor.our_nodes.directory().get((region, node)) == pubkey

    await wait_for(known, what=f"the engine to learn {node}'s pubkey")


async def request(nc: Client, body: dict[str, Any]) -> dict[str, Any]:
    subject = f"corridor.api.v1.intents.rebalance.{body['caller']['id']}"
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def test_the_day_s_budget_is_enforced_from_the_log_across_an_engine_restart(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    async with signing_engine(nats_url, database_url, tmp_path) as engine:
        await announce(nc, engine)
        first = await request(nc, command("a", max_fee_msat=70_000))
        assert first["ok"] and first["state"] == "dispatched", first
        assert first["intent_id"].startswith("rbl-")
        again = await request(nc, command("a", max_fee_msat=70_000))
        assert again["intent_id"] == first["intent_id"] and again["duplicate"]
        changed = await request(nc, command("a", max_fee_msat=60_000))
        assert not changed["ok"] and changed["error"]["code"] == "idempotency_mismatch"
        human = await request(
            nc, command("h", max_fee_msat=1, caller={"id": PLANNER, "kind": "human"})
        )
        assert not human["ok"] and human["error"]["code"] == "forbidden", human
    # A new engine on the same log: the reservation of "a" is still held.
    async with signing_engine(nats_url, database_url, tmp_path) as engine:
        await announce(nc, engine)
        await announce(nc, engine, "eu", "eu-lnd")
        second = await request(nc, command("b", max_fee_msat=40_000))
        assert second["ok"] and second["state"] == "rejected", second
        assert second["reason"] == "fee_budget_exhausted"
        third = await request(nc, command("c", max_fee_msat=30_000))
        assert third["ok"] and third["state"] == "dispatched", third
        stream = budget_stream_id("eu", budget_day(now_ms()))
        budget = await engine.processor.view(stream)
        events = [{"type": e.type, "data": e.data} for e in budget.events]
        assert [e["type"] for e in events] == ["RebalanceBudgetReserved"] * 2
        assert budget_used_msat(events) == 100_000 <= BUDGET_MSAT
        rejected = await engine.processor.view(second["intent_id"])
        assert [e.type for e in rejected.events] == ["RebalanceRequested", "RebalanceRejected"]
        # Another region's day is its own budget.
        us = await request(nc, command("d", max_fee_msat=40_000, source_region="us",
                                       source_node="us-lnd", target_region="eu",
                                       target_node="eu-lnd"))  # fmt: skip
        assert us["ok"] and us["state"] == "dispatched", us


async def test_a_circular_rebalance_moves_outbound_between_two_channels_of_one_node_once(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    """alice -> hub -> bob -> alice through the engine, the signed order, alice's executor and
    the simulated lnd's gRPC API: alice's own invoice (its derived preimage), paid out of the
    hub channel and back in from bob; asked twice, paid once (ADR 0247)."""
    import asyncio
    import contextlib

    import msgspec

    from schemas.rebalance_messages import budget_day, budget_stream_id
    from services.bootstrap import bootstrap
    from services.executor.keysend import SECRET_FILE_NAME, keysend_preimage, load_or_create_secret
    from services.settings import Settings
    from services.sim.lnd_server import start_lnd_node_server
    from services.sim.network import SimNetwork
    from services.sim.topology import ChannelSpec, PolicySpec
    from tests.conftest import wait_for
    from tests.integration.test_executor import make_executor
    from tests.lightning.lnd_harness import CAPACITY_MSAT, SEED, lnd_topology

    edge = PolicySpec(fee_base_msat=0, fee_ppm=10, cltv_delta=40)
    base = lnd_topology()
    back = ChannelSpec(a="bob", b="alice", capacity_msat=CAPACITY_MSAT,
                       a_balance_msat=CAPACITY_MSAT // 2, a_policy=edge, b_policy=edge)  # fmt: skip
    network = SimNetwork.from_topology(
        msgspec.structs.replace(base, channels=(*base.channels, back)), seed=SEED
    )
    server = await start_lnd_node_server(network, "alice", state_dir=tmp_path / "nodes")
    alice = network.node("alice")
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": [{
        "name": "alice", "role": alice.role, "region": "us",
        "implementation": alice.implementation, "endpoint": server.endpoint,
        "pubkey": alice.pubkey,
    }]}))  # fmt: skip
    settings = Settings(relay_poll_s=0.2, state_dir=tmp_path, corridors={"us-eu": ["us/alice"]})
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    executor = make_executor(tmp_path, nats_url, "us", "alice", "alice-1")
    task = asyncio.create_task(executor.run())
    try:
        await wait_for(engine.relay.leader.is_set, what="the relay to lead")

        def knows_alice() -> bool:  # from alice's executor's channel snapshots (ADR 0249)
            return engine.processor.our_nodes.directory().get(("us", "alice")) == alice.pubkey

        await wait_for(knows_alice, what="the engine to learn alice's pubkey")
        channels = {c.peer: c for c in network.channels_of("alice")}
        before = {peer: c.local_balance_msat for peer, c in channels.items()}
        body = command(
            "circle", max_fee_msat=20_000, mode="circular", source_region="us",
            source_node="alice", target_region="us", target_node="alice",
            destination=alice.pubkey, amount_msat=1_000_000,
            outgoing_channel_id=channels["hub"].channel_id,
            last_hop_pubkey=network.node("bob").pubkey,
        )  # fmt: skip
        reply = await request(nc, body)
        assert reply["ok"] and reply["state"] == "dispatched", reply
        rebalance_id = reply["intent_id"]

        async def ended() -> bool:
            view = await engine.processor.view(rebalance_id)
            return getattr(view, "state", None) in ("succeeded", "failed")

        await wait_for(ended, timeout_s=20, what="the circular rebalance to end")
        again = await request(nc, body)
        view = await engine.processor.view(rebalance_id)
        budget = await engine.processor.view(budget_stream_id("us", budget_day(now_ms())))
    finally:
        executor.stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        await executor.close_node()
        await engine.stop()
        await server.stop()
        await network.aclose()
    assert view.state == "succeeded", view
    assert again["intent_id"] == rebalance_id and again["duplicate"]
    secret = load_or_create_secret(tmp_path / SECRET_FILE_NAME)
    _, payment_hash = keysend_preimage(secret, rebalance_id, 1)
    paid = [p for p in network.payments() if p.payment_hash == payment_hash]
    assert [(p.origin, p.destination, p.status) for p in paid] == [("alice", "alice", "succeeded")]
    fee_msat = paid[0].fee_msat
    after = {c.peer: c.local_balance_msat for c in network.channels_of("alice")}
    assert after["hub"] == before["hub"] - 1_000_000 - fee_msat
    assert after["bob"] == before["bob"] + 1_000_000
    succeeded = [e for e in view.events if e.type == "RebalanceSucceeded"]
    assert [e.data["fee_msat"] for e in succeeded] == [fee_msat]
    released = [e.data for e in budget.events if e.type == "RebalanceBudgetReleased"]
    assert [(d["spent_msat"], d["released_msat"]) for d in released] == [
        (fee_msat, 20_000 - fee_msat)
    ]


async def test_a_cln_source_pays_the_invoice_a_receive_issued_on_the_target_once(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    """A cross-region move from a Core Lightning node (no keysend of ours, ADR 0008): the
    target's LND node issues an invoice through a receive intent, the rebalance carries it,
    the CLN executor pays it through the real CLN adapter; the receive ends paid and the
    rebalance succeeded, each once (ADR 0248)."""
    import asyncio
    import contextlib

    from services.bootstrap import bootstrap
    from services.executor import Executor
    from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
    from services.executor.nodes import adapter_for
    from services.settings import Settings
    from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
    from services.sim.cln_server import start_cln_node_server
    from services.sim.lnd_server import start_lnd_node_server
    from services.sim.network import SimNetwork
    from services.sim.topology import default_topology
    from tests.conftest import wait_for
    from tests.integration.test_executor import FAST, SEED

    network = SimNetwork.from_topology(default_topology(), seed=SEED)
    cln = await start_cln_node_server(network, "us-cln", socket_path=tmp_path / "cln.sock")
    lnd = await start_lnd_node_server(network, "eu-lnd", state_dir=tmp_path / "nodes")
    settings = Settings(relay_poll_s=0.2, state_dir=tmp_path,
                        corridors={"us-eu": ["us/us-cln", "eu/eu-lnd"]})  # fmt: skip
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    secret = load_or_create_secret(tmp_path / SECRET_FILE_NAME)
    executors = [
        Executor(
            nats_url=nats_url,
            region=region,
            node_name=name,
            node=adapter_for(endpoint),
            executor_id=f"{name}-1",
            secret=secret,
            limits=FAST,
            verifier=FileKeyring(keys_dir(tmp_path) / PUBLIC_KEYS_FILE),
        )
        for region, name, endpoint in (
            ("us", "us-cln", cln.endpoint),
            ("eu", "eu-lnd", lnd.endpoint),
        )
    ]
    tasks = [asyncio.create_task(e.run()) for e in executors]
    amount_msat = 2_000_000
    try:
        await wait_for(engine.relay.leader.is_set, what="the relay to lead")
        for executor in executors:
            await wait_for(executor.ready.is_set, what="the executors to start")
        eu_pubkey = network.node("eu-lnd").pubkey

        def knows_eu() -> bool:  # from eu-lnd's executor's channel snapshots (ADR 0249)
            return engine.processor.our_nodes.directory().get(("eu", "eu-lnd")) == eu_pubkey

        await wait_for(knows_eu, what="the engine to learn eu-lnd's pubkey")
        receive = {
            "type": "CreateReceiveIntent", "version": 1, "idempotency_key": "rbl-in",
            "caller": {"id": PLANNER, "kind": "service"}, "amount_msat": amount_msat,
            "memo": "rebalance us-eu", "expiry_s": 600, "region": "eu",
        }  # fmt: skip
        msg = await nc.request(f"corridor.api.v1.intents.receive.{PLANNER}",
                               json.dumps(receive).encode(), timeout=10)  # fmt: skip
        receive_id = json.loads(msg.data)["intent_id"]

        async def state_of(stream_id: str) -> str | None:
            return getattr(await engine.processor.view(stream_id), "state", None)

        async def issued() -> bool:
            return await state_of(receive_id) == "issued"

        await wait_for(issued, timeout_s=20, what="the target's invoice")
        view = await engine.processor.view(receive_id)
        invoice = next(e.data for e in view.events if e.type == "InvoiceIssued")
        body = command(
            "cln-move", max_fee_msat=50_000, source_region="us", source_node="us-cln",
            target_region="eu", target_node="eu-lnd", destination=network.node("eu-lnd").pubkey,
            amount_msat=amount_msat, payment_request=invoice["payment_request"],
        )  # fmt: skip
        wrong_body = command(
            "cln-wrong", max_fee_msat=50_000, source_region="us", source_node="us-cln",
            target_region="eu", target_node="eu-lnd", amount_msat=amount_msat + 1,
            destination=network.node("eu-lnd").pubkey, payment_request=invoice["payment_request"],
        )  # fmt: skip
        wrong = await request(nc, wrong_body)
        assert wrong["ok"] and wrong["state"] == "rejected" and wrong["reason"] == "bad_invoice"
        reply = await request(nc, body)
        assert reply["ok"] and reply["state"] == "dispatched", reply
        rebalance_id = reply["intent_id"]

        async def both_done() -> bool:
            return (await state_of(rebalance_id), await state_of(receive_id)) == (
                "succeeded",
                "paid",
            )

        await wait_for(both_done, timeout_s=30, what="the move to pay and the receive to credit")
        again = await request(nc, body)
        rebalance = await engine.processor.view(rebalance_id)
        credited = await engine.processor.view(receive_id)
    finally:
        for executor in executors:
            executor.stop()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        for executor in executors:
            await executor.close_node()
        await engine.stop()
        await cln.stop()
        await lnd.stop()
        await network.aclose()
    assert again["intent_id"] == rebalance_id and again["duplicate"]
    paid = [p for p in network.payments() if p.payment_hash == invoice["payment_hash"]]
    assert [(p.origin, p.destination, p.status) for p in paid] == [
        ("us-cln", "eu-lnd", "succeeded")
    ]
    assert [e.type for e in rebalance.events].count("RebalanceSucceeded") == 1
    assert [e.type for e in credited.events].count("InvoicePaid") == 1


async def test_a_move_over_the_auto_limit_waits_for_an_operator_s_approval(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    async with signing_engine(nats_url, database_url, tmp_path) as engine:
        await announce(nc, engine)
        big = await request(nc, command("big", max_fee_msat=30_000, amount_msat=10_000_001))
        assert big["ok"] and big["state"] == "awaiting_approval", big
        stream = budget_stream_id("eu", budget_day(now_ms()))
        assert not getattr(await engine.processor.view(stream), "ok", False)  # nothing held
        approve = {"type": "ApproveRebalance", "version": 1, "rebalance_id": big["intent_id"],
                   "operator_id": "ops-1"}  # fmt: skip
        msg = await nc.request("corridor.api.v1.intents.rebalance_approve.ops-1",
                               json.dumps(approve).encode(), timeout=10)  # fmt: skip
        approved = json.loads(msg.data)
        assert approved["ok"] and approved["state"] == "dispatched", approved
        view = await engine.processor.view(big["intent_id"])
        assert [e.type for e in view.events] == [
            "RebalanceRequested",
            "RebalanceApproved",
            "RebalanceDispatched",
        ]
        assert view.events[1].data["operator_id"] == "ops-1"
        budget = await engine.processor.view(stream)
        events = [{"type": e.type, "data": e.data} for e in budget.events]
        assert budget_used_msat(events) == 30_000


async def test_a_move_that_would_pay_outside_our_nodes_is_refused_audited_and_reserves_nothing(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    """A service credential allowed to rebalance cannot pay an outside node through the
    rebalance path, around the payment policy: the destination is checked against the pubkey
    the target's executor reported, the source against the engine's node table (ADR 0249)."""
    outsider = "03" + "ee" * 32
    async with signing_engine(nats_url, database_url, tmp_path) as engine:
        await announce(nc, engine)
        for key, fields, field in (
            ("out-1", {"destination": outsider}, "destination"),
            ("out-2", {"destination": outsider, "amount_msat": 50_000_000}, "destination"),
            ("out-3", {"source_node": "mallory"}, "source_node"),
            ("out-4", {"target_node": "asia-lnd"}, "target_node"),
        ):
            reply = await request(nc, command(key, max_fee_msat=1_000, **fields))
            assert not reply["ok"], reply
            assert (reply["error"]["code"], reply["error"]["field"]) == ("not_our_node", field)
        # Audited: the request and its refusal are in the log, with the caller's credential.
        again = await request(nc, command("out-1", max_fee_msat=1_000, destination=outsider))
        assert again["ok"] and again["state"] == "rejected" and again["duplicate"], again
        view = await engine.processor.view(again["intent_id"])
        assert [e.type for e in view.events] == ["RebalanceRequested", "RebalanceRejected"]
        assert view.events[1].data["field"] == "destination"
        # Nothing reserved, nothing dispatched.
        stream = budget_stream_id("eu", budget_day(now_ms()))
        assert not getattr(await engine.processor.view(stream), "ok", False)
        mine = await request(nc, command("in-1", max_fee_msat=1_000))
        assert mine["ok"] and mine["state"] == "dispatched", mine


async def test_a_rebalance_order_lost_from_the_dispatch_stream_is_reissued_and_pays_once(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    """The sweeper's repair (ADR 0075) covers rebalance orders (ADR 0249): the order lost
    from CORRIDOR_DISPATCH is re-published from the log, the executor pays it, and the
    network's ledger shows one payment for the move's hash."""
    from services.bus import subjects
    from services.executor.keysend import SECRET_FILE_NAME, keysend_preimage, load_or_create_secret
    from tests.integration.test_executor import SETTLE_TIMEOUT_S, sim_stack
    from tests.integration.test_self_healing import _dispatch_holds, running_engine

    async with (
        sim_stack(tmp_path, nats_url) as sim,
        running_engine(
            nats_url, database_url, tmp_path, reissue_after_s=1, sweep_interval_s=0.2
        ) as engine,
    ):
        await announce(nc, engine, "eu", "eu-lnd", sim.network.node("eu-lnd").pubkey)
        body = command(
            "lost", max_fee_msat=50_000, source_region="us", source_node="us-lnd",
            target_region="eu", target_node="eu-lnd", amount_msat=1_000_000,
            destination=sim.network.node("eu-lnd").pubkey,
        )  # fmt: skip
        reply = await request(nc, body)
        assert reply["ok"] and reply["state"] == "dispatched", reply
        rebalance_id = reply["intent_id"]
        js = nc.jetstream()
        await wait_for(lambda: _dispatch_holds(js, 1), what="the order in the dispatch stream")
        # The order is lost (a stream limit, an operator's purge): nobody would ever pay it.
        await js.purge_stream(subjects.DISPATCH_STREAM)
        sim.start("us", "us-lnd", "us-1")

        async def succeeded() -> bool:
            view = await engine.processor.view(rebalance_id)
            return getattr(view, "state", None) == "succeeded"

        await wait_for(succeeded, timeout_s=SETTLE_TIMEOUT_S, what="the re-issued move to pay")
        assert engine.sweeper is not None and engine.sweeper.reissued >= 1
        view = await engine.processor.view(rebalance_id)
    assert [e.type for e in view.events].count("RebalanceSucceeded") == 1
    secret = load_or_create_secret(tmp_path / SECRET_FILE_NAME)
    _, payment_hash = keysend_preimage(secret, rebalance_id, 1)
    assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]


async def test_a_receive_order_lost_from_the_dispatch_stream_is_reissued_and_issued_once(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    """The same repair covers receive orders: the lost order is re-published, the executor
    asks its node for the invoice by its derived hash and creates it once (ADR 0221)."""
    from services.bus import subjects
    from tests.integration.test_executor import SETTLE_TIMEOUT_S, sim_stack
    from tests.integration.test_self_healing import _dispatch_holds, running_engine

    async with (
        sim_stack(tmp_path, nats_url) as sim,
        running_engine(
            nats_url, database_url, tmp_path, reissue_after_s=1, sweep_interval_s=0.2
        ) as engine,
    ):
        receive = {
            "type": "CreateReceiveIntent", "version": 1, "idempotency_key": "lost-in",
            "caller": {"id": PLANNER, "kind": "service"}, "amount_msat": 1_000_000,
            "memo": "lost", "expiry_s": 600, "region": "us",
        }  # fmt: skip
        msg = await nc.request(f"corridor.api.v1.intents.receive.{PLANNER}",
                               json.dumps(receive).encode(), timeout=10)  # fmt: skip
        receive_id = json.loads(msg.data)["intent_id"]
        js = nc.jetstream()
        await wait_for(lambda: _dispatch_holds(js, 1), what="the order in the dispatch stream")
        await js.purge_stream(subjects.DISPATCH_STREAM)
        before = len(sim.network.invoices_of("us-lnd"))
        sim.start("us", "us-lnd", "us-1")

        async def issued() -> bool:
            view = await engine.processor.view(receive_id)
            return getattr(view, "state", None) == "issued"

        await wait_for(issued, timeout_s=SETTLE_TIMEOUT_S, what="the re-issued receive order")
        assert engine.sweeper is not None and engine.sweeper.reissued >= 1
        view = await engine.processor.view(receive_id)
    assert [e.type for e in view.events].count("InvoiceIssued") == 1
    assert len(sim.network.invoices_of("us-lnd")) == before + 1


async def test_the_planner_proposes_a_circle_that_the_simulated_lnd_pays_once(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    """alice's channel to hub is above its band, her channel to bob below: the planner, fed
    alice's executor's own channel snapshot, proposes the circle out of hub and back from bob
    with its explanation; the engine, the signed order, the executor and the simulated lnd's
    gRPC API pay it once, and both channels move toward the band (ADR 0281)."""
    import asyncio
    import contextlib

    from projections.liquidity import LiquidityBook
    from services.bootstrap import bootstrap
    from services.domain.liquidity.circles import plan_circles
    from services.domain.liquidity.planner import PlanRules
    from services.domain.liquidity.targets import Target, Targets
    from services.executor.keysend import SECRET_FILE_NAME, keysend_preimage, load_or_create_secret
    from services.liquidity.rebalance import circle_body, circle_inputs
    from services.settings import Settings
    from services.sim.lnd_server import start_lnd_node_server
    from services.sim.network import SimNetwork
    from services.sim.topology import ChannelSpec, PolicySpec
    from tests.integration.test_executor import make_executor
    from tests.lightning.lnd_harness import CAPACITY_MSAT, SEED, lnd_topology

    edge = PolicySpec(fee_base_msat=0, fee_ppm=10, cltv_delta=40)
    base = lnd_topology()  # alice -> hub at 75 % local
    back = ChannelSpec(a="bob", b="alice", capacity_msat=CAPACITY_MSAT,
                       a_balance_msat=CAPACITY_MSAT // 2, a_policy=edge, b_policy=edge)  # fmt: skip
    network = SimNetwork.from_topology(
        msgspec.structs.replace(base, channels=(*base.channels, back)), seed=SEED
    )
    server = await start_lnd_node_server(network, "alice", state_dir=tmp_path / "nodes")
    alice = network.node("alice")
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": [{
        "name": "alice", "role": alice.role, "region": "us",
        "implementation": alice.implementation, "endpoint": server.endpoint,
        "pubkey": alice.pubkey,
    }]}))  # fmt: skip
    settings = Settings(relay_poll_s=0.2, state_dir=tmp_path, corridors={"us-eu": ["us/alice"]})
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    book = LiquidityBook(interval_ms=60_000)

    async def heard(msg: Any) -> None:
        book.receive(msg.subject, msg.data, received_at_ms=now_ms())

    sub = await nc.subscribe(snapshot_subject("us", "alice"), cb=heard)
    executor = make_executor(tmp_path, nats_url, "us", "alice", "alice-1")
    task = asyncio.create_task(executor.run())
    targets = Targets(default=Target(local_ratio_min_ppm=600_000, local_ratio_max_ppm=700_000))
    rules = PlanRules(fee_budget_msat_per_day=20_000, fee_ppm_estimate=100,
                      fee_base_msat_estimate=1_000, move_min_msat=10_000,
                      move_max_msat=1_000_000)  # fmt: skip
    try:
        await wait_for(engine.relay.leader.is_set, what="the relay to lead")
        await wait_for(lambda: ("us", "alice") in book.nodes(), what="alice's snapshot")

        def knows_alice() -> bool:
            return engine.processor.our_nodes.directory().get(("us", "alice")) == alice.pubkey

        await wait_for(knows_alice, what="the engine to learn alice's pubkey")
        channels = {c.peer: c for c in network.channels_of("alice")}
        before = {peer: c.local_balance_msat for peer, c in channels.items()}
        corridors = {"corridors": [{"candidates": [
            {"region": "us", "node": "alice", "keysend": True}]}]}  # fmt: skip
        circles, skipped = plan_circles(circle_inputs(book.view(now_ms()), corridors), targets,
                                        rules, budget_left_msat={"us": 20_000})  # fmt: skip
        assert skipped == ()
        (circle,) = circles
        assert circle.outgoing_channel_id == channels["hub"].channel_id
        assert circle.last_hop_pubkey == network.node("bob").pubkey
        assert circle.amount_msat == 1_000_000 and circle.max_fee_msat == 2_200
        body = circle_body(circle, caller_id=PLANNER, caller_kind="service", key="circle-1",
                           dry_run=False)  # fmt: skip
        reply = await request(nc, body)
        assert reply["ok"] and reply["state"] == "dispatched", reply
        rebalance_id = reply["intent_id"]

        async def ended() -> bool:
            view = await engine.processor.view(rebalance_id)
            return getattr(view, "state", None) in ("succeeded", "failed")

        await wait_for(ended, timeout_s=20, what="the planned circle to end")
        again = await request(nc, body)
        view = await engine.processor.view(rebalance_id)
    finally:
        await sub.unsubscribe()
        executor.stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        await executor.close_node()
        await engine.stop()
        await server.stop()
        await network.aclose()
    assert view.state == "succeeded", view
    assert again["intent_id"] == rebalance_id and again["duplicate"]
    requested = view.events[0].data
    assert requested["explanation"]["reason"] == "channel_ratio_out_of_band"
    assert requested["explanation"]["in_channel_id"] == channels["bob"].channel_id
    secret = load_or_create_secret(tmp_path / SECRET_FILE_NAME)
    _, payment_hash = keysend_preimage(secret, rebalance_id, 1)
    paid = [p for p in network.payments() if p.payment_hash == payment_hash]
    assert [(p.origin, p.destination, p.status) for p in paid] == [("alice", "alice", "succeeded")]
    after = {c.peer: c.local_balance_msat for c in network.channels_of("alice")}
    assert after["hub"] == before["hub"] - 1_000_000 - paid[0].fee_msat
    assert after["bob"] == before["bob"] + 1_000_000
