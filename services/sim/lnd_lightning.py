"""The simulated node's ``lnrpc.Lightning`` handlers (the subset Corridor and operators use).

Behaviour follows lnd's ``rpcserver.go`` (https://github.com/lightningnetwork/lnd). Calls not
overridden here answer ``UNIMPLEMENTED`` from the generated base class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import grpc

from services.lightning.lnd_convert import MSAT_PER_SAT
from services.lightning.lnd_proto import lightning_pb2 as ln
from services.lightning.lnd_proto import lightning_pb2_grpc
from services.sim import lnd_messages
from services.sim.lnd_chain import ChainServicerMixin, full_channel
from services.sim.lnd_custom import CustomMessageServicerMixin
from services.sim.lnd_gate import NodeGate
from services.sim.lnd_invoices import LightningInvoices
from services.sim.lnd_payments import lnd_visible

if TYPE_CHECKING:
    _Context = grpc.aio.ServicerContext[Any, Any]

# ListPayments page size when max_payments is 0; lnd pages without a bound, we keep one.
LIST_PAYMENTS_MAX: Final = 1000


class LightningServicer(
    ChainServicerMixin,
    CustomMessageServicerMixin,
    LightningInvoices,
    lightning_pb2_grpc.LightningServicer,
):
    def __init__(self, network: Any, gate: NodeGate) -> None:
        self._network = network
        self._gate = gate
        self._node = gate.node_name

    async def GetInfo(self, request: Any, context: _Context) -> Any:
        return lnd_messages.get_info(
            self._network.node(self._node),
            network=self._network.network,
            block_height=self._network.block_height,
            channels=self._network.channels_of(self._node),
            now_s=self._network.now_s(),
            pending_channels=sum(
                p.state != "closed" for p in self._network.pending_channels_of(self._node)
            ),
        )

    async def ChannelBalance(self, request: Any, context: _Context) -> Any:
        # rpcserver.go sums every open channel, active or not: our and their commitment
        # balances, and the HTLCs in flight (ours out: unsettled local; theirs in: remote).
        # Channels still being opened are the chain's (pending_open_*), none in this sum.
        channels = self._network.channels_of(self._node)
        local_msat = sum(chan.local_balance_msat for chan in channels)
        remote_msat = sum(chan.remote_balance_msat for chan in channels)
        outgoing_msat, incoming_msat = self._network.unsettled_htlcs_msat(self._node)
        return ln.ChannelBalanceResponse(
            balance=local_msat // MSAT_PER_SAT,
            local_balance=_amount(local_msat),
            remote_balance=_amount(remote_msat),
            unsettled_local_balance=_amount(outgoing_msat),
            unsettled_remote_balance=_amount(incoming_msat),
            pending_open_local_balance=_amount(0),
            pending_open_remote_balance=_amount(0),
        )

    async def DecodePayReq(self, request: Any, context: _Context) -> Any:
        try:
            decoded = self._network.decode(request.pay_req)
        except ValueError as exc:
            # lnd passes zpay32's decode error through as a plain (Unknown) error.
            await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        return lnd_messages.pay_req(decoded)

    async def ListChannels(self, request: Any, context: _Context) -> Any:
        channels = self._network.channels_of(self._node)
        if request.active_only:
            channels = [chan for chan in channels if chan.active]
        if request.inactive_only:
            channels = [chan for chan in channels if not chan.active]
        if request.peer:
            channels = [chan for chan in channels if chan.peer_pubkey == request.peer.hex()]
        rendered = [
            full_channel(
                chan,
                block_height=self._network.block_height,
                peer_alias=self._network.node(chan.peer).alias if request.peer_alias_lookup else "",
            )
            for chan in channels
        ]
        return ln.ListChannelsResponse(channels=rendered)

    async def ListPayments(self, request: Any, context: _Context) -> Any:
        mine = [p for p in self._network.payments_of(self._node) if lnd_visible(p)]
        if not request.include_incomplete:
            mine = [p for p in mine if p.status == "succeeded"]
        total = len(mine)
        # Pages by payment_index (our attempt_id), as lnd's QueryPayments does.
        page_max = request.max_payments or LIST_PAYMENTS_MAX
        if request.reversed:
            if request.index_offset:
                mine = [p for p in mine if p.attempt_id < request.index_offset]
            mine = mine[-page_max:]
        else:
            mine = [p for p in mine if p.attempt_id > request.index_offset][:page_max]
        return ln.ListPaymentsResponse(
            payments=[lnd_messages.payment(p, omit_hops=request.omit_hops) for p in mine],
            first_index_offset=mine[0].attempt_id if mine else 0,
            last_index_offset=mine[-1].attempt_id if mine else 0,
            total_num_payments=total if request.count_total_payments else 0,
        )


def _amount(msat: int) -> Any:
    """``lnrpc.Amount``: sat floored, and exact msat."""
    return ln.Amount(sat=msat // MSAT_PER_SAT, msat=msat)
