"""A channel snapshot through every adapter (LND gRPC, CLN JSON-RPC, in-process) agrees with
the adapter's own channel list and the simulated network's truth, and survives the wire."""

from __future__ import annotations

from schemas.codec import encode
from services.executor.channel_snapshot import decode_snapshot, observe_channels
from tests.lightning.conftest import AdapterEnv


async def test_the_snapshot_holds_every_channel_as_the_node_reports_it(
    adapter_env: AdapterEnv,
) -> None:
    snap = await observe_channels(
        adapter_env.adapter, region="us", node_name=adapter_env.node, executor_id="x",
        timeout_s=5.0,
    )  # fmt: skip
    assert decode_snapshot(encode(snap)) == snap
    channels = await adapter_env.adapter.list_channels()
    assert snap.reachable and snap.channels_total == len(channels) == len(snap.channels)
    by_id = {c.channel_id: c for c in channels}
    for row in snap.channels:
        channel = by_id[row.channel_id]
        assert (row.peer_pubkey, row.capacity_msat, row.active) == (
            channel.peer_pubkey, channel.capacity_msat, channel.active,
        )  # fmt: skip
        assert row.local_balance_msat == channel.local_balance_msat
        assert row.remote_balance_msat == channel.remote_balance_msat
        assert (row.fee_base_msat, row.fee_ppm, row.channel_point, row.initiator) == (
            channel.fee_base_msat, channel.fee_ppm, channel.channel_point, channel.initiator,
        )  # fmt: skip
        assert row.channel_point and row.fee_ppm is not None  # the adapters fill them
    assert snap.node_pubkey == (await adapter_env.adapter.get_info()).pubkey
    # Every adapter serves pending_channels now (branch chain, M1): none here, and known.
    assert snap.pending_known
    assert len(snap.pending) == len(await adapter_env.adapter.pending_channels())
    if adapter_env.network is not None:
        truth = {c.channel_id for c in adapter_env.network.channels_of(adapter_env.node)}
        assert {row.channel_id for row in snap.channels} == truth
        adapter_env.network.faults.set_offline(adapter_env.node)
        offline = await observe_channels(
            adapter_env.adapter, region="us", node_name=adapter_env.node, executor_id="x",
            timeout_s=5.0,
        )  # fmt: skip
        assert not offline.reachable and offline.channels == ()


async def test_a_channel_being_opened_shows_as_pending_in_the_snapshot(
    adapter_env: AdapterEnv,
) -> None:
    from tests.lightning.test_adapter_contract import _open_channel

    opening = await _open_channel(adapter_env)
    snap = await observe_channels(
        adapter_env.adapter, region="us", node_name=adapter_env.node, executor_id="x",
        timeout_s=5.0,
    )  # fmt: skip
    (pending,) = [p for p in snap.pending if p.channel_point == opening.channel_point]
    assert (pending.state, pending.confirmations) == ("opening", 0)
    assert pending.peer_pubkey == adapter_env.sim.node("carol").pubkey
    assert opening.channel_point not in {row.channel_point for row in snap.channels}
    assert decode_snapshot(encode(snap)) == snap
