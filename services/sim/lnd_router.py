"""The simulated node's ``routerrpc.Router`` handlers: SendPaymentV2 and TrackPaymentV2.

Semantics follow lnd's ``lnrpc/routerrpc/router_server.go`` as summarised in
shared/conformance/lnd/payment-semantics.md: a stream of ``lnrpc.Payment`` updates ending at
the terminal one; a second send of a hash that succeeded or is in flight fails with
``AlreadyExists``; tracking an unknown hash fails with ``NotFound``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import grpc

from services.lightning.lnd_proto import router_pb2_grpc
from services.sim import lnd_messages
from services.sim.errors import NodeOffline, PaymentExists, UnknownNode
from services.sim.lnd_gate import NodeGate, next_or_offline
from services.sim.lnd_interceptor import HtlcInterceptorHandler
from services.sim.lnd_payments import invoice_expired_text, latest_visible, rejected_before_send
from services.sim.lnd_send import SendArgs, send_args
from services.sim.records import SimPayment
from services.sim.routing import RouteLimits

if TYPE_CHECKING:
    _Context = grpc.aio.ServicerContext[Any, Any]

# lnd's texts for a second send of a hash (payments/db/errors.go); router_server.go returns
# each as AlreadyExists. A simulated payment locks its HTLC as it is registered, so no record
# rests in lnd's INITIATED state and "payment already exists" never arises; INITIATED appears
# only as the opening update of a send's stream.
ALREADY_EXISTS_TEXT: Final = {
    "succeeded": "invoice is already paid",
    "in_flight": "payment is in transition",
}
NOT_INITIATED_TEXT: Final = "payment isn't initiated"


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, network: Any, gate: NodeGate) -> None:
        self._network = network
        self._gate = gate
        self._node = gate.node_name
        self._interceptor = HtlcInterceptorHandler(network, gate)

    async def HtlcInterceptor(self, request_iterator: Any, context: _Context) -> AsyncIterator[Any]:
        async for message in self._interceptor.serve(request_iterator, context):
            yield message

    async def SendPaymentV2(self, request: Any, context: _Context) -> AsyncIterator[Any]:
        try:
            args = send_args(request, self._network)
            payment = await self._send(args)
        except PaymentExists as exc:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, ALREADY_EXISTS_TEXT[exc.existing.status]
            )
        except NodeOffline:
            await self._gate.abort_offline(context)
        except (ValueError, KeyError) as exc:
            # Request validation errors are plain Go errors in lnd: gRPC status Unknown.
            await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        if rejected_before_send(payment):
            decoded = self._network.decode(args.payment_request)
            text = invoice_expired_text(decoded.created_at_s, decoded.expiry_s)
            await context.abort(grpc.StatusCode.UNKNOWN, text)
        if not args.no_inflight_updates:
            yield lnd_messages.initiated(payment)
        async for message in self._stream(payment, context, args.no_inflight_updates):
            yield message

    async def TrackPaymentV2(self, request: Any, context: _Context) -> AsyncIterator[Any]:
        attempts = self._network.payments_of(self._node, request.payment_hash.hex())
        payment = latest_visible(attempts)
        if payment is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, NOT_INITIATED_TEXT)
        async for message in self._stream(payment, context, request.no_inflight_updates):
            yield message

    async def _send(self, args: SendArgs) -> SimPayment:
        payment: SimPayment = await self._network.send_payment(
            self._node,
            payment_request=args.payment_request,
            destination=args.destination,
            amount_msat=args.amount_msat,
            payment_hash=args.payment_hash,
            preimage=args.preimage,
            max_fee_msat=args.max_fee_msat,
            timeout_s=args.timeout_s,
            limits=self._limits(args),
        )
        return payment

    def _limits(self, args: SendArgs) -> RouteLimits:
        """The first-hop, last-hop and self-payment restrictions (ADR 0247). A last hop that
        is no node of the graph can be no route's last hop: named as the pubkey, it matches
        none."""
        last_hop = args.last_hop_pubkey
        if last_hop is not None:
            with contextlib.suppress(UnknownNode):
                last_hop = self._network.node_by_pubkey(last_hop).name
        return RouteLimits(
            first_channels=args.outgoing_channels, last_hop=last_hop,
            allow_self_payment=args.allow_self_payment,
        )  # fmt: skip

    async def _stream(
        self, first: SimPayment, context: _Context, final_only: bool
    ) -> AsyncIterator[Any]:
        """``first`` and every later state of the attempt, ending at the terminal one.

        A real lnd's streams break when it stops, so ours break when the node goes offline;
        the payment itself carries on, and TrackPaymentV2 picks it up again.
        """
        if first.is_final or not final_only:
            yield lnd_messages.payment(first)
        last = first
        if last.is_final:
            return
        updates = self._network.subscribe_payment(self._node, first.payment_hash)
        try:
            with self._gate.offline_signal() as offline:
                while not last.is_final:
                    update = await next_or_offline(updates, offline)
                    if update is None:
                        await self._gate.abort_offline(context)
                        return
                    if update.attempt_id != first.attempt_id or update == last:
                        continue
                    last = update
                    if update.is_final or not final_only:
                        yield lnd_messages.payment(update)
        finally:
            await updates.aclose()
