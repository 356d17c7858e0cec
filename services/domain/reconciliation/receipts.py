"""Our receives against a node's record of its invoices (issue 18, ADR 0220). Pure.

A receive is credited by ``InvoicePaid``. The node's record (``lookup_invoice``) is the other
side: a paid invoice with no ``InvoicePaid`` in our log (``paid_not_credited``), or the reverse
(``credited_but_node_not``), is a mismatch; so is a credited amount the node did not receive.
A settlement the follower has not reported yet is not a mismatch until it is older than the
bound (the reconciler's in-flight bound), so a pass racing the follower finds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from services.domain.reconciliation.compare import Category, Mismatch

RECEIPT_EVENTS: Final = frozenset({"InvoiceIssued", "InvoicePaid", "InvoiceExpired"})

ReceiptStatus = Literal["issued", "paid", "expired"]
InvoiceState = Literal["open", "accepted", "paid", "cancelled", "expired"]


@dataclass(frozen=True, slots=True)
class OurReceipt:
    intent_id: str
    payment_hash: str
    status: ReceiptStatus
    amount_received_msat: int = 0
    last_position: int = 0


@dataclass(frozen=True, slots=True)
class NodeInvoice:
    """The node's record of one of our invoices."""

    payment_hash: str
    state: InvoiceState
    amount_received_msat: int
    paid_at_s: int | None


def fold_receipts(records: Iterable[Mapping[str, Any]], *, node: str) -> list[OurReceipt]:
    """Every invoice issued on ``node`` in ``records`` (the log's events as mappings, upcast),
    as our log last described it."""
    held: dict[str, OurReceipt] = {}
    for record in records:
        kind, data = record["type"], record["data"]
        stream, position = str(record["stream_id"]), int(record.get("position", 0))
        if data.get("node") != node:
            continue
        if kind == "InvoiceIssued":
            held[stream] = OurReceipt(
                intent_id=stream, payment_hash=str(data["payment_hash"]), status="issued",
                last_position=position,
            )  # fmt: skip
            continue
        known = held.get(stream)
        if known is None:
            continue
        if kind == "InvoicePaid":
            held[stream] = replace(
                known, status="paid", amount_received_msat=int(data["amount_received_msat"]),
                last_position=position,
            )  # fmt: skip
        elif kind == "InvoiceExpired":
            held[stream] = replace(known, status="expired", last_position=position)
    return list(held.values())


def compare_receipts(
    ours: Iterable[OurReceipt],
    node_invoices: Mapping[str, NodeInvoice | None],
    *,
    now_ms: int,
    settle_bound_ms: int,
) -> list[Mismatch]:
    """Every disagreement among the receipts whose hash the node was asked about."""
    found: list[Mismatch] = []
    for receipt in ours:
        if receipt.payment_hash not in node_invoices:
            continue
        invoice = node_invoices[receipt.payment_hash]
        node_paid = invoice is not None and invoice.state == "paid"
        if receipt.status == "paid" and not node_paid:
            found.append(_mismatch(Category.CREDITED_BUT_NODE_NOT, receipt, invoice))
        elif receipt.status == "paid" and invoice is not None:
            if invoice.amount_received_msat != receipt.amount_received_msat:
                found.append(_mismatch(Category.AMOUNT_MISMATCH, receipt, invoice))
        elif node_paid and invoice is not None:
            paid_ms = (invoice.paid_at_s or 0) * 1000
            if now_ms - paid_ms > settle_bound_ms:
                found.append(_mismatch(Category.PAID_NOT_CREDITED, receipt, invoice))
    return found


def _mismatch(category: Category, receipt: OurReceipt, invoice: NodeInvoice | None) -> Mismatch:
    evidence: dict[str, str | int | None] = {
        "our_status": receipt.status,
        "our_received_msat": receipt.amount_received_msat,
        "node_status": invoice.state if invoice is not None else "no_record",
        "node_received_msat": invoice.amount_received_msat if invoice is not None else None,
    }
    return Mismatch(
        category=category,
        payment_hash=receipt.payment_hash,
        intent_id=receipt.intent_id,
        evidence=evidence,
    )
