"""The simulated node's ``invoicesrpc.Invoices`` service: hold invoices and invoice lookups.

Semantics follow lnd's ``lnrpc/invoicesrpc/invoices_server.go`` and the invoice registry
(``invoices/invoiceregistry.go``, https://github.com/lightningnetwork/lnd):

- AddHoldInvoice takes the payment hash; a payment's HTLC is then held (ACCEPTED) until
  SettleInvoice (with the preimage) or CancelInvoice. The registry's refusals are plain Go
  errors, gRPC ``UNKNOWN``: ``invoice still open`` (settling before an HTLC arrived),
  ``invoice already canceled``, ``invoice already settled`` (cancelling a settled invoice;
  settling it again is no error). Cancelling a cancelled invoice is no error either.
- LookupInvoiceV2 finds an invoice by ``payment_hash``; an unknown one is ``NotFound``.
- SubscribeSingleInvoice sends the invoice's current state, then each change, and ends once
  the state is final (SETTLED or CANCELED). An expired invoice turns CANCELED at its expiry.

HtlcModifier (a bidirectional stream) is not simulated and answers ``UNIMPLEMENTED``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import grpc

from services.lightning.lnd_convert import MSAT_PER_SAT
from services.lightning.lnd_proto import invoices_pb2, invoices_pb2_grpc
from services.sim import lnd_messages
from services.sim.errors import InvoiceExists, InvoiceNotOpen, NodeOffline
from services.sim.lnd_gate import NodeGate
from services.sim.lnd_invoices import (
    DEFAULT_INVOICE_EXPIRY_S,
    DUPLICATE_INVOICE_TEXT,
    INVOICE_NOT_FOUND_TEXT,
)
from services.sim.network import wait_for_change
from services.sim.records import SimInvoice

if TYPE_CHECKING:
    _Context = grpc.aio.ServicerContext[Any, Any]

HASH_BYTES: Final = 32
# invoices/errors.go: what the registry says when an invoice is not in the state asked for.
_NOT_OPEN_TEXT: Final = {
    "open": "invoice still open",
    "expired": "invoice already canceled",
    "canceled": "invoice already canceled",
    "settled": "invoice already settled",
}
_FINAL_STATES: Final = ("settled", "canceled", "expired")


class InvoicesServicer(invoices_pb2_grpc.InvoicesServicer):
    def __init__(self, network: Any, gate: NodeGate) -> None:
        self._network = network
        self._gate = gate
        self._node = gate.node_name

    async def AddHoldInvoice(self, request: Any, context: _Context) -> Any:
        if request.value and request.value_msat:
            await context.abort(
                grpc.StatusCode.UNKNOWN, "sat and msat arguments are mutually exclusive"
            )
        if len(request.hash) != HASH_BYTES:
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                f"invalid hash length of {len(request.hash)}, want {HASH_BYTES}",
            )
        amount_msat = request.value_msat or request.value * MSAT_PER_SAT
        try:
            invoice = self._network.create_hold_invoice(
                self._node,
                request.hash.hex(),
                amount_msat or None,
                request.memo,
                request.expiry or DEFAULT_INVOICE_EXPIRY_S,
            )
        except InvoiceExists:
            await context.abort(grpc.StatusCode.UNKNOWN, DUPLICATE_INVOICE_TEXT)
        except NodeOffline:
            await self._gate.abort_offline(context)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        return invoices_pb2.AddHoldInvoiceResp(
            payment_request=invoice.bolt11 or "",
            add_index=invoice.add_index,
            payment_addr=bytes.fromhex(invoice.payment_secret),
        )

    async def SettleInvoice(self, request: Any, context: _Context) -> Any:
        if len(request.preimage) != HASH_BYTES:
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                f"invalid preimage length of {len(request.preimage)}, want {HASH_BYTES}",
            )
        try:
            self._network.settle_invoice(self._node, request.preimage.hex())
        except KeyError:
            await context.abort(grpc.StatusCode.UNKNOWN, INVOICE_NOT_FOUND_TEXT)
        except InvoiceNotOpen as exc:
            if exc.state != "settled":  # settling twice is no error (invoices_server.go)
                await context.abort(grpc.StatusCode.UNKNOWN, _NOT_OPEN_TEXT[exc.state])
        return invoices_pb2.SettleInvoiceResp()

    async def CancelInvoice(self, request: Any, context: _Context) -> Any:
        try:
            self._network.cancel_invoice(self._node, request.payment_hash.hex())
        except KeyError:
            await context.abort(grpc.StatusCode.UNKNOWN, INVOICE_NOT_FOUND_TEXT)
        except InvoiceNotOpen as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, _NOT_OPEN_TEXT[exc.state])
        return invoices_pb2.CancelInvoiceResp()

    async def LookupInvoiceV2(self, request: Any, context: _Context) -> Any:
        if not request.payment_hash:
            # The simulator keeps invoices by hash only (no AMP set ids, no address index).
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "only lookups by payment_hash are simulated"
            )
        invoice = self._network.lookup_invoice(self._node, request.payment_hash.hex())
        if invoice is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, INVOICE_NOT_FOUND_TEXT)
        return lnd_messages.invoice(invoice)

    async def SubscribeSingleInvoice(self, request: Any, context: _Context) -> AsyncIterator[Any]:
        payment_hash = request.r_hash.hex()
        async with self._network.watch_invoices(self._node) as changes:
            with self._gate.offline_signal() as offline:
                last: SimInvoice | None = None
                while True:
                    current = self._network.lookup_invoice(self._node, payment_hash)
                    if current is not None and current != last:
                        last = current
                        yield lnd_messages.invoice(current)
                        if current.state in _FINAL_STATES:
                            return
                    wait_s = None
                    if current is not None and current.state == "open":
                        # An expiry is read from the clock, not announced: wake up for it.
                        expires_at_s = current.created_at_s + current.expiry_s
                        wait_s = max(expires_at_s - self._network.now_s(), 0) + 1
                    if (await wait_for_change(changes, offline, wait_s)).offline:
                        await self._gate.abort_offline(context)
                        return
