"""Channel snapshots from a region executor over a real nats-server, read back into the
liquidity view, against the simulated network's own channels (ADR 0240); and who may publish
and hear them under the NATS role table (ADR 0060).
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.aio.msg import Msg

from projections.liquidity import LiquidityBook
from schemas.codec import encode
from services.bootstrap import Engine
from services.bus import subjects
from services.executor.channel_snapshot import ChannelSnapshot, snapshot_subject
from services.liquidity.feed import gather, now_ms
from tests.conftest import wait_for
from tests.integration.test_executor import SimStack, engine, sim  # noqa: F401 (fixtures)
from tests.integration.test_nats_auth import Bus, bus, user  # noqa: F401 (fixture)

WAIT_S = 10.0


async def test_an_executor_publishes_every_channel_of_its_node(
    engine: Engine,  # noqa: F811
    nc: Client,
    sim: SimStack,  # noqa: F811
) -> None:
    sim.start("eu", "eu-lnd", "eu-1")
    sim.start("us", "us-lnd", "us-1")
    book = LiquidityBook(interval_ms=200)
    expected = {("eu", "eu-lnd"), ("us", "us-lnd")}
    await gather(nc, book, expected=expected, wait_s=WAIT_S)
    assert book.nodes() == expected
    view = book.view(0)  # the clock only ages rows; figures are what matters here
    for region, node in sorted(expected):
        truth = {c.channel_id: c for c in sim.network.channels_of(node)}
        rows = {c["channel_id"]: c for c in view["channels"] if c["node"] == node}
        assert set(rows) == set(truth) and rows
        for channel_id, row in rows.items():
            t = truth[channel_id]
            assert (row["peer_pubkey"], row["capacity_msat"], row["active"]) == (
                t.peer_pubkey, t.capacity_msat, t.active,
            )  # fmt: skip
            assert (row["local_balance_msat"], row["remote_balance_msat"]) == (
                t.local_balance_msat, t.remote_balance_msat,
            )  # fmt: skip
        totals = next(r for r in view["regions"] if r["region"] == region)
        assert totals["outbound_msat"] == sum(c.local_balance_msat for c in truth.values()
                                              if c.active)  # fmt: skip


async def test_a_node_gone_offline_is_published_unreachable_and_shown_with_its_old_rows(
    engine: Engine,  # noqa: F811
    nc: Client,
    sim: SimStack,  # noqa: F811
) -> None:
    book = LiquidityBook(interval_ms=200)
    sim.start("eu", "eu-lnd", "eu-1")
    await gather(nc, book, expected={("eu", "eu-lnd")}, wait_s=WAIT_S)
    before = book.view(0)["regions"][0]["outbound_msat"]
    unreachable: asyncio.Queue[ChannelSnapshot] = asyncio.Queue()

    async def heard(msg: Msg) -> None:
        from services.executor.channel_snapshot import decode_snapshot

        book.receive(msg.subject, msg.data, received_at_ms=now_ms())
        snap = decode_snapshot(msg.data)
        if not snap.reachable:
            unreachable.put_nowait(snap)

    sub = await nc.subscribe(snapshot_subject("eu", "eu-lnd"), cb=heard)
    sim.network.faults.set_offline("eu-lnd")
    try:
        await asyncio.wait_for(unreachable.get(), timeout=WAIT_S)
    finally:
        await sub.unsubscribe()
    region = book.view(now_ms())["regions"][0]
    assert region["stale"] and region["outbound_msat"] == before


async def test_executors_publish_only_their_own_node_and_operators_hear_them(
    bus: Bus,  # noqa: F811
) -> None:
    executor = await user(bus, "eu-lnd")
    operator = await user(bus, "op-1")
    caller = await user(bus, "acme")
    try:
        heard: list[str] = []

        async def got(msg: Msg) -> None:
            heard.append(msg.subject)

        await operator.nc.subscribe(subjects.LIQUIDITY_WILDCARD, cb=got)
        await operator.nc.flush()
        await caller.nc.subscribe(subjects.LIQUIDITY_WILDCARD, cb=got)
        await caller.nc.flush()
        await wait_for(
            lambda: caller.refused("subscription", subjects.LIQUIDITY_WILDCARD),
            what="the caller's subscription refused",
        )
        snap = ChannelSnapshot(node="eu-lnd", region="eu", executor_id="eu-1", observed_at_ms=1,
                               reachable=True, channels=(), channels_total=0)  # fmt: skip
        await executor.publish_refused(snapshot_subject("us", "us-lnd"), encode(snap))
        await executor.nc.publish(snapshot_subject("eu", "eu-lnd"), encode(snap))
        await executor.nc.flush()
        await wait_for(lambda: heard, what="the snapshot at the operator")
        assert heard == [snapshot_subject("eu", "eu-lnd")]
    finally:
        for u in (executor, operator, caller):
            await u.nc.close()
