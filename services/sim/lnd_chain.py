"""The simulated lnd's on-chain and channel-lifecycle calls: ``OpenChannel`` (streaming),
``OpenChannelSync``, ``CloseChannel`` (streaming), ``PendingChannels``, ``WalletBalance`` and
``FeeReport``, as ``lnrpc/rpcserver.go`` answers them.

txids travel as bytes in lnd's internal (reversed) byte order in ``ChannelPoint`` and
``PendingUpdate``, and as display hex in strings, as in lnd. Refusals are gRPC ``UNKNOWN`` with
lnd's own texts (plain Go errors), except calls the simulator does not model
(``UNIMPLEMENTED``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import grpc

from services.lightning.lnd_convert import scid_from_str
from services.lightning.lnd_proto import lightning_pb2 as ln
from services.sim.chain import MSAT_PER_SAT
from services.sim.channel_ops import ChannelRefused
from services.sim.errors import NodeOffline
from services.sim.keys import derive_bytes
from services.sim.records import SimChannel, SimHtlc, SimPendingChannel
from services.sim.topology import PolicySpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    _Context = grpc.aio.ServicerContext[Any, Any]

# lnd's fee estimate when a request names neither sat_per_vbyte nor target_conf: the simulator
# has no mempool to estimate from, so one fixed rate stands in for it.
FEE_ESTIMATE_SAT_PER_VBYTE: Final = 5
# lnd's defaults (lncfg, funding): reserve 1 % of capacity, dust limit 354 sat, 483 HTLCs,
# csv delay 144 blocks.
CHANNEL_RESERVE_PERCENT: Final = 1
DUST_LIMIT_SAT: Final = 354
MAX_ACCEPTED_HTLCS: Final = 483
CSV_DELAY_BLOCKS: Final = 144
# An HTLC's expiry as the simulator shows it: the tip plus lnd's default final CLTV delta.
HTLC_EXPIRY_DELTA: Final = 80


def txid_bytes(txid_hex: str) -> bytes:
    """A display txid as lnd's chainhash bytes (byte-reversed)."""
    return bytes.fromhex(txid_hex)[::-1]


def btc(sat: int) -> str:
    """btcutil.Amount's String(): BTC with trailing zeros trimmed."""
    text = format(Decimal(sat) / Decimal(100_000_000), "f").rstrip("0").rstrip(".")
    return f"{text or '0'} BTC"


def channel_point_of(point: Any) -> str:
    """A ``ChannelPoint`` as ``txid:index`` (display hex), as lnd prints it."""
    if point.WhichOneof("funding_txid") == "funding_txid_bytes":
        txid = bytes(point.funding_txid_bytes)[::-1].hex()
    else:
        txid = point.funding_txid_str
    return f"{txid}:{point.output_index}"


def _reserve_sat(capacity_msat: int) -> int:
    return max(capacity_msat // MSAT_PER_SAT * CHANNEL_RESERVE_PERCENT // 100, DUST_LIMIT_SAT)


def _constraints(capacity_msat: int) -> Any:
    return ln.ChannelConstraints(
        csv_delay=CSV_DELAY_BLOCKS,
        chan_reserve_sat=_reserve_sat(capacity_msat),
        dust_limit_sat=DUST_LIMIT_SAT,
        max_pending_amt_msat=capacity_msat * 99 // 100,
        min_htlc_msat=1,
        max_accepted_htlcs=MAX_ACCEPTED_HTLCS,
    )


def htlc(record: SimHtlc, *, block_height: int) -> Any:
    return ln.HTLC(
        incoming=record.incoming,
        amount=record.amount_msat // MSAT_PER_SAT,
        hash_lock=bytes.fromhex(record.payment_hash) if record.payment_hash else b"",
        expiration_height=block_height + HTLC_EXPIRY_DELTA,
        htlc_index=record.htlc_id,
        locked_in=True,
    )


def full_channel(chan: SimChannel, *, block_height: int, peer_alias: str = "") -> Any:
    """``lnrpc.Channel`` with what the simulator can tell: HTLCs, reserves, constraints."""
    reserve_sat = _reserve_sat(chan.capacity_msat)
    return ln.Channel(
        active=chan.active,
        remote_pubkey=chan.peer_pubkey,
        channel_point=f"{chan.funding_txid}:{chan.funding_output}",
        chan_id=scid_from_str(chan.channel_id),
        capacity=chan.capacity_msat // MSAT_PER_SAT,
        local_balance=chan.local_balance_msat // MSAT_PER_SAT,
        remote_balance=chan.remote_balance_msat // MSAT_PER_SAT,
        unsettled_balance=chan.pending_htlc_msat // MSAT_PER_SAT,
        pending_htlcs=[htlc(h, block_height=block_height) for h in chan.htlcs],
        csv_delay=CSV_DELAY_BLOCKS,
        initiator=chan.opener_is_local,
        peer_alias=peer_alias,
        chan_status_flags="ChanStatusDefault",
        local_chan_reserve_sat=reserve_sat,
        remote_chan_reserve_sat=reserve_sat,
        static_remote_key=True,
        commitment_type=ln.ANCHORS,
        push_amount_sat=chan.push_msat // MSAT_PER_SAT,
        local_constraints=_constraints(chan.capacity_msat),
        remote_constraints=_constraints(chan.capacity_msat),
        memo=chan.memo,
        private=chan.private,
        zero_conf=chan.zero_conf,
        # lnd reports the alias as chan_id while unconfirmed, the alias in alias_scids.
        alias_scids=[scid_from_str(chan.channel_id)] if chan.zero_conf else [],
    )


def pending_channel(view: SimPendingChannel) -> Any:
    reserve_sat = _reserve_sat(view.capacity_msat)
    return ln.PendingChannelsResponse.PendingChannel(
        remote_node_pub=view.peer_pubkey,
        channel_point=f"{view.funding_txid}:{view.funding_output}",
        capacity=view.capacity_msat // MSAT_PER_SAT,
        local_balance=view.local_balance_msat // MSAT_PER_SAT,
        remote_balance=view.remote_balance_msat // MSAT_PER_SAT,
        local_chan_reserve_sat=reserve_sat,
        remote_chan_reserve_sat=reserve_sat,
        initiator=ln.INITIATOR_LOCAL if view.opener_is_local else ln.INITIATOR_REMOTE,
        commitment_type=ln.ANCHORS,
        chan_status_flags="ChanStatusDefault",
        memo=view.memo,
    )


def pending_channels_response(views: list[SimPendingChannel]) -> Any:
    opening = [v for v in views if v.state == "opening"]
    closing = [v for v in views if v.state == "closing"]
    return ln.PendingChannelsResponse(
        total_limbo_balance=sum(v.local_balance_msat for v in closing) // MSAT_PER_SAT,
        pending_open_channels=[
            ln.PendingChannelsResponse.PendingOpenChannel(
                channel=pending_channel(v),
                confirmations_until_active=max(v.confirmations_needed - v.confirmations, 0),
                confirmation_height=v.confirmation_height,
                # lnd cancels a funding flow the peer has not seen confirm within 2016 blocks.
                funding_expiry_blocks=2016 - v.confirmations if v.opener_is_local else 0,
            )
            for v in opening
        ],
        waiting_close_channels=[
            ln.PendingChannelsResponse.WaitingCloseChannel(
                channel=pending_channel(v),
                limbo_balance=v.local_balance_msat // MSAT_PER_SAT,
                closing_txid=v.closing_txid,
                blocks_til_close_confirmed=max(v.confirmations_needed - v.confirmations, 0),
                close_height=v.confirmation_height,
            )
            for v in closing
        ],
    )


class ChainServicerMixin:
    """Mixed into the simulated ``LightningServicer`` (which sets ``_network`` and ``_node``)."""

    _network: Any
    _node: str

    async def WalletBalance(self, request: Any, context: _Context) -> Any:
        if request.account not in ("", "default"):
            await context.abort(grpc.StatusCode.UNKNOWN, f"account {request.account} not found")
        wallet = self._network.wallet_of(self._node)
        confirmed = wallet.confirmed_msat // MSAT_PER_SAT
        unconfirmed = wallet.unconfirmed_msat // MSAT_PER_SAT
        return ln.WalletBalanceResponse(
            total_balance=confirmed + unconfirmed,
            confirmed_balance=confirmed,
            unconfirmed_balance=unconfirmed,
            account_balance={
                "default": ln.WalletAccountBalance(
                    confirmed_balance=confirmed, unconfirmed_balance=unconfirmed
                )
            },
        )

    async def PendingChannels(self, request: Any, context: _Context) -> Any:
        return pending_channels_response(self._network.pending_channels_of(self._node))

    async def FeeReport(self, request: Any, context: _Context) -> Any:
        return ln.FeeReportResponse(
            channel_fees=[
                ln.ChannelFeeReport(
                    chan_id=scid_from_str(chan.channel_id),
                    channel_point=f"{chan.funding_txid}:{chan.funding_output}",
                    base_fee_msat=chan.fee_base_msat,
                    fee_per_mil=chan.fee_ppm,
                    fee_rate=chan.fee_ppm / 1_000_000,
                )
                for chan in self._network.channels_of(self._node)
            ]
        )

    async def OpenChannelSync(self, request: Any, context: _Context) -> Any:
        funding = await self._open(request, context)
        return ln.ChannelPoint(
            funding_txid_bytes=txid_bytes(funding.txid), output_index=funding.output_index
        )

    async def OpenChannel(self, request: Any, context: _Context) -> AsyncIterator[Any]:
        funding = await self._open(request, context)
        point = ln.ChannelPoint(
            funding_txid_bytes=txid_bytes(funding.txid), output_index=funding.output_index
        )
        pending_chan_id = derive_bytes(self._network.seed, "pending-chan-id", funding.txid)
        yield ln.OpenStatusUpdate(
            chan_pending=ln.PendingUpdate(
                txid=txid_bytes(funding.txid), output_index=funding.output_index
            ),
            pending_chan_id=pending_chan_id,
        )
        channel_point = f"{funding.txid}:{funding.output_index}"
        while not any(
            f"{c.funding_txid}:{c.funding_output}" == channel_point
            for c in self._network.channels_of(self._node)
        ):
            await self._network.next_block().wait()
        yield ln.OpenStatusUpdate(
            chan_open=ln.ChannelOpenUpdate(channel_point=point), pending_chan_id=pending_chan_id
        )

    async def CloseChannel(self, request: Any, context: _Context) -> AsyncIterator[Any]:
        if request.force:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "force close is not simulated")
        if request.delivery_address or request.no_wait:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "delivery_address and no_wait are not simulated"
            )
        if request.sat_per_byte and request.sat_per_vbyte:
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                "either SatPerByte or SatPerVByte should be set, but not both",
            )
        rate = request.sat_per_vbyte or request.sat_per_byte or FEE_ESTIMATE_SAT_PER_VBYTE
        channel_point = channel_point_of(request.channel_point)
        try:
            closing_txid = self._network.close_channel(
                self._node, channel_point, sat_per_vbyte=rate
            )
        except ChannelRefused as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, _lnd_close_text(exc))
        except NodeOffline:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node offline")
        yield ln.CloseStatusUpdate(
            close_pending=ln.PendingUpdate(
                txid=txid_bytes(closing_txid), fee_per_vbyte=rate, local_close_tx=False
            )
        )
        while self._network.chain.confirmations(closing_txid) < 1:
            await self._network.next_block().wait()
        outputs = self._network.chain.txs[closing_txid].outputs
        ours = [sat for owner, sat in outputs if owner == self._node]
        theirs = [sat for owner, sat in outputs if owner not in (self._node, None)]
        yield ln.CloseStatusUpdate(
            chan_close=ln.ChannelCloseUpdate(
                closing_txid=txid_bytes(closing_txid),
                success=True,
                local_close_output=ln.CloseOutput(amount_sat=ours[0], is_local=True)
                if ours
                else None,
                remote_close_output=ln.CloseOutput(amount_sat=theirs[0]) if theirs else None,
            )
        )

    async def _open(self, request: Any, context: _Context) -> Any:
        unsupported = (
            request.HasField("funding_shim") or request.fund_max
            or bool(request.outpoints) or bool(request.close_address)
        )  # fmt: skip
        if unsupported:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                "funding shims, fund_max, outpoints and close_address are not simulated",
            )
        # lnd (rpcserver.go parseOpenChannelReq): an scid alias needs an unannounced channel
        # (option_scid_alias forbids announcing, bLIP-52 section 5), and the simulator serves
        # zero-conf only with an alias, as LSPS2 uses it.
        if request.scid_alias and not request.private:
            await context.abort(
                grpc.StatusCode.UNKNOWN, "scid-alias is only supported for private channels"
            )
        if request.zero_conf and not request.scid_alias:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "zero_conf without scid_alias is not simulated"
            )
        if request.sat_per_byte and request.sat_per_vbyte:
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                "either SatPerByte or SatPerVByte should be set, but not both",
            )
        if request.target_conf and (request.sat_per_vbyte or request.sat_per_byte):
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                "either TargetConf or SatPerVByte should be set, but not both",
            )
        pubkey = request.node_pubkey.hex() or request.node_pubkey_string
        if len(pubkey) != 66:
            await context.abort(grpc.StatusCode.UNKNOWN, "malformed public key")
        if request.push_sat >= request.local_funding_amount > 0:
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                "amount pushed to remote peer for initial state must be below the local "
                "funding amount",
            )
        default = PolicySpec()
        policy = PolicySpec(
            fee_base_msat=request.base_fee if request.use_base_fee else default.fee_base_msat,
            fee_ppm=request.fee_rate if request.use_fee_rate else default.fee_ppm,
            cltv_delta=default.cltv_delta,
        )
        try:
            return self._network.open_channel(
                self._node,
                pubkey,
                amount_sat=request.local_funding_amount,
                push_msat=request.push_sat * MSAT_PER_SAT,
                sat_per_vbyte=request.sat_per_vbyte
                or request.sat_per_byte
                or FEE_ESTIMATE_SAT_PER_VBYTE,
                memo=request.memo,
                policy=policy,
                zero_conf=request.zero_conf,
                private=request.private,
            )
        except ChannelRefused as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, _lnd_open_text(exc, pubkey))
        except NodeOffline:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node offline")


def _lnd_open_text(exc: ChannelRefused, pubkey: str) -> str:
    """lnd's words for each refusal (rpcserver.go parseOpenChannelReq, chanfunding)."""
    if exc.code == "insufficient_funds":
        return (
            "not enough witness outputs to create funding transaction, need "
            f"{btc(exc.need_sat)} only have {btc(exc.have_sat)} available"
        )
    if exc.code == "too_small":
        return "channel is too small, the minimum channel size is: 20000 SAT"
    if exc.code in ("unknown_peer", "peer_offline"):
        return f"peer {pubkey} is not online"
    if exc.code == "self_channel":
        return "cannot open channel to self"
    if exc.code == "memo_too_long":
        return "provided memo (500+ chars) is too long, the maximum length is 500 chars"
    return str(exc)


def _lnd_close_text(exc: ChannelRefused) -> str:
    if exc.code in ("unknown_channel", "pending_open"):
        return "channel not found"
    if exc.code == "already_closing":
        return "channel is already closing"
    return str(exc)
