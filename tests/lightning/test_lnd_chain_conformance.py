"""The simulated lnd's on-chain and channel-lifecycle calls against lnd's published API: every
message of OpenChannel, OpenChannelSync, CloseChannel, PendingChannels, WalletBalance,
FeeReport and the full ListChannels is valid for lnd's swagger, through a raw gRPC client."""

from __future__ import annotations

import grpc

from services.lightning.lnd_proto import lightning_pb2 as ln
from services.sim.channel_ops import FUNDING_CONFIRMATIONS
from tests.lightning.lnd_harness import MAX_FEE_MSAT
from tests.lightning.test_lnd_conformance import (
    RawLnd,
    _rpc_error,
    assert_conforms,
    needs_swagger,
    raw,
)

__all__ = ["raw"]  # the fixture, imported so pytest finds it here

SWAGGER = "lightning.swagger.json"


@needs_swagger
async def test_open_pending_open_and_close_messages_match_the_swagger(raw: RawLnd) -> None:
    md, network = raw.metadata, raw.harness.network
    carol = bytes.fromhex(network.node("carol").pubkey)
    wallet = assert_conforms(
        SWAGGER, "lnrpcWalletBalanceResponse",
        await raw.lightning.WalletBalance(ln.WalletBalanceRequest(), metadata=md),
    )  # fmt: skip
    assert wallet["account_balance"]["default"]["confirmed_balance"] == wallet["confirmed_balance"]
    stream = raw.lightning.OpenChannel(
        ln.OpenChannelRequest(
            node_pubkey=carol, local_funding_amount=400_000, sat_per_vbyte=3, memo="intent-1"
        ),
        metadata=md,
    )
    first = await stream.read()
    assert_conforms(SWAGGER, "lnrpcOpenStatusUpdate", first)
    funding_txid = first.chan_pending.txid[::-1].hex()  # lnd's chainhash byte order
    assert funding_txid in network.chain.mempool
    pending = assert_conforms(
        SWAGGER, "lnrpcPendingChannelsResponse",
        await raw.lightning.PendingChannels(ln.PendingChannelsRequest(), metadata=md),
    )  # fmt: skip
    (opening,) = pending["pending_open_channels"]
    assert opening["channel"]["memo"] == "intent-1"  # the node's own record of who asked
    assert opening["confirmations_until_active"] == FUNDING_CONFIRMATIONS
    assert opening["channel"]["initiator"] == "INITIATOR_LOCAL"
    info = await raw.lightning.GetInfo(ln.GetInfoRequest(), metadata=md)
    assert info.num_pending_channels == 1
    # The stream re-reads the chain at each block, so mining before it waits loses nothing.
    network.mine(FUNDING_CONFIRMATIONS)
    opened_raw = await stream.read()
    opened = assert_conforms(SWAGGER, "lnrpcOpenStatusUpdate", opened_raw)
    point = opened["chan_open"]["channel_point"]
    assert (point["output_index"], first.pending_chan_id) == (0, opened_raw.pending_chan_id)
    channels = assert_conforms(
        SWAGGER, "lnrpcListChannelsResponse",
        await raw.lightning.ListChannels(ln.ListChannelsRequest(), metadata=md),
    )  # fmt: skip
    (new,) = [c for c in channels["channels"] if c["memo"] == "intent-1"]
    assert new["local_constraints"]["chan_reserve_sat"] == "4000" and new["initiator"] is True
    fees = assert_conforms(
        SWAGGER, "lnrpcFeeReportResponse",
        await raw.lightning.FeeReport(ln.FeeReportRequest(), metadata=md),
    )  # fmt: skip
    assert new["channel_point"] in {f["channel_point"] for f in fees["channel_fees"]}
    txid, index = new["channel_point"].split(":")
    close = raw.lightning.CloseChannel(
        ln.CloseChannelRequest(
            channel_point=ln.ChannelPoint(funding_txid_str=txid, output_index=int(index)),
            sat_per_vbyte=2,
        ),
        metadata=md,
    )
    closing = await close.read()
    assert_conforms(SWAGGER, "lnrpcCloseStatusUpdate", closing)
    waiting = assert_conforms(
        SWAGGER, "lnrpcPendingChannelsResponse",
        await raw.lightning.PendingChannels(ln.PendingChannelsRequest(), metadata=md),
    )  # fmt: skip
    (closing_entry,) = waiting["waiting_close_channels"]
    assert closing_entry["closing_txid"] == closing.close_pending.txid[::-1].hex()
    network.mine(1)
    done = await close.read()
    assert_conforms(SWAGGER, "lnrpcCloseStatusUpdate", done)
    assert done.chan_close.success and done.chan_close.local_close_output.amount_sat > 0
    network.check_invariants()


async def test_open_refusals_are_lnds(raw: RawLnd) -> None:
    md, network = raw.metadata, raw.harness.network
    carol = bytes.fromhex(network.node("carol").pubkey)
    broke = await _rpc_error(
        raw.lightning.OpenChannelSync(
            ln.OpenChannelRequest(node_pubkey=carol, local_funding_amount=10**12), metadata=md
        )
    )
    assert broke.code() is grpc.StatusCode.UNKNOWN
    assert (broke.details() or "").startswith("not enough witness outputs to create funding")
    small = await _rpc_error(
        raw.lightning.OpenChannelSync(
            ln.OpenChannelRequest(node_pubkey=carol, local_funding_amount=1000), metadata=md
        )
    )
    assert "channel is too small" in (small.details() or "")
    both = await _rpc_error(
        raw.lightning.OpenChannelSync(
            ln.OpenChannelRequest(
                node_pubkey=carol, local_funding_amount=100_000, sat_per_vbyte=2, target_conf=3
            ),
            metadata=md,
        )
    )
    assert "either TargetConf or SatPerVByte" in (both.details() or "")
    assert network.chain.mempool == []


async def test_close_with_an_htlc_in_flight_is_refused_like_lnd(raw: RawLnd) -> None:
    md, network = raw.metadata, raw.harness.network
    network.faults.drop_resolution()
    invoice = network.create_invoice("bob", 20_000, "h", 600)
    await network.send_payment(
        "alice", payment_request=invoice.bolt11, max_fee_msat=MAX_FEE_MSAT, timeout_s=5
    )
    listed = await raw.lightning.ListChannels(ln.ListChannelsRequest(), metadata=md)
    (chan,) = listed.channels
    assert len(chan.pending_htlcs) == 1 and chan.pending_htlcs[0].hash_lock.hex() == (
        invoice.payment_hash
    )
    txid, index = chan.channel_point.split(":")
    refused = await _rpc_error(
        raw.lightning.CloseChannel(
            ln.CloseChannelRequest(
                channel_point=ln.ChannelPoint(funding_txid_str=txid, output_index=int(index))
            ),
            metadata=md,
        )
    )
    assert refused.details() == "cannot co-op close channel with active htlcs"
