"""The simulated node's invoice calls of ``lnrpc.Lightning``: AddInvoice, LookupInvoice,
ListInvoices and SubscribeInvoices, with lnd's semantics (``rpcserver.go`` and the invoice
registry, ``invoices/invoiceregistry.go``, https://github.com/lightningnetwork/lnd):

- AddInvoice takes the caller's ``r_preimage`` (32 bytes) or draws one; ``r_hash`` is output
  only and ignored. A second invoice for a hash fails with ``invoice with payment hash already
  exists`` (``invoices.ErrDuplicateInvoice``), a plain Go error: gRPC ``UNKNOWN``.
- ``settle_index`` counts settlements per node from 1; ``add_index`` counts additions.
- SubscribeInvoices first sends the backlog of invoices added after ``add_index`` and settled
  after ``settle_index``, each only when its index is non-zero (0 means "no backlog"), then every
  invoice as it is added (OPEN) or settled (SETTLED).
- An expired invoice is CANCELED, as lnd's expiry watcher cancels it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import grpc

from services.lightning.lnd_convert import MSAT_PER_SAT
from services.lightning.lnd_proto import lightning_pb2 as ln
from services.lsps.client import LspsTimeout, LspsUnavailable
from services.sim import lnd_messages
from services.sim.errors import InvoiceExists, NodeOffline
from services.sim.lsps2_wallet import JitBuyFailed, jit_invoice, needs_jit
from services.sim.network import wait_for_change
from services.sim.records import SimInvoice

if TYPE_CHECKING:
    from services.sim.lnd_gate import NodeGate

    _Context = grpc.aio.ServicerContext[Any, Any]

# lnd's default invoice expiry when the request leaves it 0 (invoicesrpc: 24 hours).
DEFAULT_INVOICE_EXPIRY_S: Final = 86_400
# ListInvoices' page when num_max_invoices is 0 (rpcserver.go defaults it to 100).
LIST_INVOICES_DEFAULT: Final = 100
# ...and our bound on what a caller may ask for in one page: lnd has none, a sim keeps one.
LIST_INVOICES_MAX: Final = 10_000
PREIMAGE_BYTES: Final = 32
# invoices.ErrDuplicateInvoice and invoices.ErrInvoiceNotFound.
DUPLICATE_INVOICE_TEXT: Final = "invoice with payment hash already exists"
INVOICE_NOT_FOUND_TEXT: Final = "unable to locate invoice"


class LightningInvoices:
    """Mixed into the ``lnrpc.Lightning`` servicer; needs ``_network``, ``_node``, ``_gate``."""

    _network: Any
    _node: str
    _gate: NodeGate

    async def AddInvoice(self, request: Any, context: _Context) -> Any:
        if request.value and request.value_msat:
            # lnrpc.UnmarshallAmt's ErrSatMsatMutualExclusive.
            await context.abort(
                grpc.StatusCode.UNKNOWN, "sat and msat arguments are mutually exclusive"
            )
        preimage = None
        if request.r_preimage:
            if len(request.r_preimage) != PREIMAGE_BYTES:
                # lntypes.MakePreimage's text.
                await context.abort(
                    grpc.StatusCode.UNKNOWN,
                    f"invalid preimage length of {len(request.r_preimage)}, want {PREIMAGE_BYTES}",
                )
            preimage = request.r_preimage.hex()
        amount_msat = request.value_msat or request.value * MSAT_PER_SAT
        lsp = self._network.wallet_lsp(self._node)
        if (
            lsp is not None
            and preimage is None
            and needs_jit(self._network, self._node, amount_msat or None)
        ):
            # A wallet with an LSP and no inbound buys a JIT channel first (lsps2_wallet.py).
            try:
                invoice = await jit_invoice(
                    self._network, self._node, lsp, amount_msat or None, request.memo,
                    request.expiry or DEFAULT_INVOICE_EXPIRY_S,
                )  # fmt: skip
            except (JitBuyFailed, LspsTimeout, LspsUnavailable) as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"no inbound liquidity: {exc}")
            return lnd_messages.add_invoice_response(invoice)
        try:
            invoice = self._network.create_invoice(
                self._node,
                amount_msat or None,
                request.memo,
                request.expiry or DEFAULT_INVOICE_EXPIRY_S,
                preimage=preimage,
            )
        except InvoiceExists:
            await context.abort(grpc.StatusCode.UNKNOWN, DUPLICATE_INVOICE_TEXT)
        except NodeOffline:
            await self._gate.abort_offline(context)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        return lnd_messages.add_invoice_response(invoice)

    async def LookupInvoice(self, request: Any, context: _Context) -> Any:
        payment_hash = request.r_hash.hex() or request.r_hash_str
        invoice = self._network.lookup_invoice(self._node, payment_hash)
        if invoice is None:
            # rpcserver.go returns ErrInvoiceNotFound as NotFound.
            await context.abort(grpc.StatusCode.NOT_FOUND, INVOICE_NOT_FOUND_TEXT)
        return lnd_messages.invoice(invoice)

    async def ListInvoices(self, request: Any, context: _Context) -> Any:
        invoices: list[SimInvoice] = self._network.invoices_of(self._node)
        if request.pending_only:
            invoices = [i for i in invoices if i.state in ("open", "accepted")]
        if request.creation_date_start:
            invoices = [i for i in invoices if i.created_at_s >= request.creation_date_start]
        if request.creation_date_end:
            invoices = [i for i in invoices if i.created_at_s <= request.creation_date_end]
        page_max = min(request.num_max_invoices or LIST_INVOICES_DEFAULT, LIST_INVOICES_MAX)
        # index_offset is exclusive, by add_index (invoices.InvoiceQuery).
        if request.reversed:
            if request.index_offset:
                invoices = [i for i in invoices if i.add_index < request.index_offset]
            invoices = invoices[-page_max:]
        else:
            invoices = [i for i in invoices if i.add_index > request.index_offset][:page_max]
        return ln.ListInvoiceResponse(
            invoices=[lnd_messages.invoice(i) for i in invoices],
            first_index_offset=invoices[0].add_index if invoices else 0,
            last_index_offset=invoices[-1].add_index if invoices else 0,
        )

    async def SubscribeInvoices(self, request: Any, context: _Context) -> AsyncIterator[Any]:
        # Watching before the backlog is read: an invoice that settles meanwhile is in the
        # backlog or among the changes, or both, and the indexes drop the copy.
        async with self._network.watch_invoices(self._node) as changes:
            last_added = request.add_index
            last_settled = request.settle_index
            backlog: list[SimInvoice] = []
            if request.add_index:
                backlog += [
                    i for i in self._network.invoices_of(self._node) if i.add_index > last_added
                ]
            if request.settle_index:
                backlog += self._network.settled_invoices(
                    self._node, after_pay_index=request.settle_index
                )
            with self._gate.offline_signal() as offline:
                for invoice in backlog:
                    yield lnd_messages.invoice(invoice)
                    last_added = max(last_added, invoice.add_index)
                    last_settled = max(last_settled, invoice.pay_index)
                while True:
                    waited = await wait_for_change(changes, offline, None)
                    if waited.offline:
                        await self._gate.abort_offline(context)
                        return
                    change = waited.change
                    assert change is not None  # an unbounded wait ends with a change
                    if change.state == "open" and change.add_index > last_added:
                        last_added = change.add_index
                    elif change.state == "settled" and change.pay_index > last_settled:
                        last_settled = change.pay_index
                    else:
                        continue  # lnd notifies these clients of additions and settlements only
                    yield lnd_messages.invoice(change)
