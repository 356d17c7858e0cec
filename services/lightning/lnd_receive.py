"""lnd's invoice records (``lnrpc.Invoice``: LookupInvoice, ListInvoices, SubscribeInvoices)
as the port's ``InvoiceStatus``, and the rules the LND adapter follows settlements by (ADR 0210).

lnd has no "expired" state: its expiry watcher cancels an unpaid invoice once its expiry has
passed (``invoices/invoiceregistry.go``), so CANCELED past ``creation_date + expiry`` reads as
``expired`` and CANCELED before it as ``cancelled`` (by us: CancelInvoice).
"""

from __future__ import annotations

from typing import Any, Final

from services.lightning.lnd_proto import lightning_pb2
from services.lightning.port import InvoiceState, InvoiceStatus

_STATE: Final[dict[int, InvoiceState]] = {
    lightning_pb2.Invoice.OPEN: "open",
    lightning_pb2.Invoice.ACCEPTED: "accepted",
    lightning_pb2.Invoice.SETTLED: "paid",
    lightning_pb2.Invoice.CANCELED: "cancelled",
}
# ListInvoices page while looking for the first settlements (ADR 0210): lnd answers a
# thousand invoices in well under a megabyte.
LIST_INVOICES_PAGE: Final = 1000
# lnd's invoices.ErrDuplicateInvoice, returned by AddInvoice as a plain error (gRPC Unknown).
DUPLICATE_INVOICE_TEXT: Final = "invoice with payment hash already exists"


def invoice_status(invoice: Any, *, now_s: float) -> InvoiceStatus:
    """``lnrpc.Invoice`` as the port's record; ``now_s`` tells an expiry from a cancel."""
    expires_at_s = invoice.creation_date + invoice.expiry
    state = _STATE.get(invoice.state)
    if state is None:
        raise ValueError(f"lnd invoice state {invoice.state} is not in lightning.proto")
    if state == "cancelled" and now_s >= expires_at_s:
        state = "expired"
    paid = state == "paid"
    return InvoiceStatus(
        payment_hash=invoice.r_hash.hex(),
        state=state,
        payment_request=invoice.payment_request,
        amount_msat=invoice.value_msat or None,
        amount_received_msat=invoice.amt_paid_msat if paid else 0,
        preimage=invoice.r_preimage.hex() if paid else None,
        created_at_s=invoice.creation_date,
        expires_at_s=expires_at_s,
        paid_at_s=invoice.settle_date if paid else None,
        pay_index=invoice.settle_index if paid else 0,
    )


def is_settlement_after(invoice: Any, cursor: int) -> bool:
    return bool(invoice.state == lightning_pb2.Invoice.SETTLED and invoice.settle_index > cursor)
