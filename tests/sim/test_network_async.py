"""The async layer: driver, wait_payment, subscribe_payment, on the real clock."""

from __future__ import annotations

import asyncio

from services.sim.network import SimNetwork
from tests.sim.helpers import diamond_topology


async def test_driver_resolves_and_subscribers_see_each_state() -> None:
    network = SimNetwork.from_topology(diamond_topology(), seed=5, hop_delay_s=0.001)
    try:
        invoice = network.create_invoice("bob", 1000, "", 3600)
        started = await network.send_payment(
            "alice", payment_request=invoice.bolt11, max_fee_msat=10_000, timeout_s=5
        )
        seen = [p.status async for p in network.subscribe_payment("alice", invoice.payment_hash)]
        assert started.status == "in_flight"
        assert seen[-1] == "succeeded" and set(seen) <= {"in_flight", "succeeded"}
        final = await network.wait_payment("alice", invoice.payment_hash, timeout_s=1)
        assert final.status == "succeeded"
    finally:
        await network.aclose()


async def test_wait_payment_returns_in_flight_at_timeout_then_release_resolves() -> None:
    network = SimNetwork.from_topology(diamond_topology(), seed=5)
    try:
        network.faults.drop_resolution()
        invoice = network.create_invoice("bob", 1000, "", 3600)
        await network.send_payment(
            "alice", payment_request=invoice.bolt11, max_fee_msat=10_000, timeout_s=5
        )
        pending = await network.wait_payment("alice", invoice.payment_hash, timeout_s=0.05)
        assert pending.status == "in_flight"
        waiter = asyncio.create_task(network.wait_payment("alice", invoice.payment_hash, 5))
        await asyncio.sleep(0)
        network.faults.release_dropped()
        assert (await waiter).status == "succeeded"
        network.check_invariants()
    finally:
        await network.aclose()
