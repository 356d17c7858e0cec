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
from services.sim.lnd_gate import NodeGate
from services.sim.lnd_payments import lnd_visible

if TYPE_CHECKING:
    _Context = grpc.aio.ServicerContext[Any, Any]

# lnd's default invoice expiry when the request leaves it 0 (invoicesrpc: 24 hours).
DEFAULT_INVOICE_EXPIRY_S: Final = 86_400
# ListPayments page size when max_payments is 0; lnd pages without a bound, we keep one.
LIST_PAYMENTS_MAX: Final = 1000


class LightningServicer(ChainServicerMixin, lightning_pb2_grpc.LightningServicer):
    def __init__(self, network: Any, gate: NodeGate) -> None:
        self._network = network
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

    async def AddInvoice(self, request: Any, context: _Context) -> Any:
        if request.value and request.value_msat:
            # lnrpc.UnmarshallAmt's ErrSatMsatMutualExclusive.
            await context.abort(
                grpc.StatusCode.UNKNOWN, "sat and msat arguments are mutually exclusive"
            )
        if request.r_preimage or request.r_hash:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "the simulator chooses invoice preimages itself"
            )
        amount_msat = request.value_msat or request.value * MSAT_PER_SAT
        try:
            invoice = self._network.create_invoice(
                self._node,
                amount_msat or None,
                request.memo,
                request.expiry or DEFAULT_INVOICE_EXPIRY_S,
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        return lnd_messages.add_invoice_response(invoice)

    async def LookupInvoice(self, request: Any, context: _Context) -> Any:
        payment_hash = request.r_hash.hex() or request.r_hash_str
        invoice = self._network.lookup_invoice(self._node, payment_hash)
        if invoice is None:
            # invoices.ErrInvoiceNotFound, which rpcserver.go returns as NotFound.
            await context.abort(grpc.StatusCode.NOT_FOUND, "unable to locate invoice")
        return lnd_messages.invoice(invoice)

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
