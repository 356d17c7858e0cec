"""CLN's invoice records (``listinvoices``, ``waitanyinvoice``; doc/schemas/listinvoices.json)
as the port's ``InvoiceStatus``."""

from __future__ import annotations

from typing import Any, Final

from services.bolt11.codec import decode_invoice
from services.lightning.port import InvoiceState, InvoiceStatus

# CLN's status enum: an invoice is unpaid, paid, or expired (unpayable). CLN has no cancelled
# invoice: delinvoice removes the record.
CLN_INVOICE_STATE: Final[dict[str, InvoiceState]] = {
    "unpaid": "open",
    "paid": "paid",
    "expired": "expired",
}


def cln_invoice_status(view: dict[str, Any]) -> InvoiceStatus:
    """Raises ``KeyError`` for a status CLN does not document (a node newer than the schema)."""
    state = CLN_INVOICE_STATE[view["status"]]
    bolt11 = view.get("bolt11", "")
    expires_at_s = int(view["expires_at"])
    # listinvoices has no creation time; the invoice itself carries it (BOLT 11 timestamp).
    created_at_s = decode_invoice(bolt11).created_at_s if bolt11 else expires_at_s
    amount = view.get("amount_msat")
    paid = state == "paid"
    return InvoiceStatus(
        payment_hash=view["payment_hash"],
        state=state,
        payment_request=bolt11,
        amount_msat=None if amount is None else int(amount),
        amount_received_msat=int(view.get("amount_received_msat", 0)) if paid else 0,
        preimage=view.get("payment_preimage") if paid else None,
        created_at_s=created_at_s,
        expires_at_s=expires_at_s,
        paid_at_s=int(view["paid_at"]) if paid else None,
        pay_index=int(view.get("pay_index", 0)) if paid else 0,
    )
