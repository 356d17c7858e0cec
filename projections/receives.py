"""Receive intents in the intents projection (ADR 0220): one document per receive, with the
payment intent's document fields (so ``intents`` reads, ``corridor audit timeline`` and the
exception queue take it as they are) plus ``kind: "receive"`` and the invoice's facts.

Receive fields: ``region``, ``node``, ``memo``, ``expiry_s``, ``payment_hash``,
``payment_request``, ``expires_at_s``, ``issued_at_ms``, ``paid_at_ms``,
``amount_received_msat``, ``pay_index``, ``paid_late``.
"""

from __future__ import annotations

from typing import Any, Final

from projections.intent_rows import Doc, add_to_timeline, advance, new_row
from services.domain.receive.transitions import STATUS_AFTER

STARTS_RECEIVE: Final = "ReceiveRequested"


def is_receive(doc: Doc) -> bool:
    return doc.get("kind") == "receive"


def new_receive_doc(event: dict[str, Any]) -> Doc:
    data = event["data"]
    return new_row(
        event, kind="receive", state="requested", region=data.get("region"), max_fee_msat=0,
        tier=data.get("tier", "auto"), memo=data.get("memo", ""), expiry_s=data.get("expiry_s"),
        payment_request=None, expires_at_s=None, issued_at_ms=None, paid_at_ms=None,
        amount_received_msat=0, pay_index=None, paid_late=False,
    )  # fmt: skip


def apply_receive(doc: Doc, event: dict[str, Any]) -> Doc:
    kind, data = event["type"], event["data"]
    at_ms = int(event["recorded_at_ms"])
    doc = dict(doc)
    advance(doc, event, STATUS_AFTER)
    what = ""
    match kind:
        case "ReceiveRequested":
            where = doc["region"] or f"corridor {doc['corridor']}"
            what = f"{doc['caller_kind']} {doc['caller_id']} asked to receive " \
                   f"{doc['amount_msat']} msat in {where}"  # fmt: skip
        case "ReceiveDispatched":
            doc.update(node=data["node"], region=data["region"], dispatches=doc["dispatches"] + 1)
            what = f"invoice asked of {data['region']}/{data['node']}"
        case "InvoiceIssued":
            doc.update(payment_hash=data["payment_hash"], payment_request=data["payment_request"],
                       expires_at_s=data["expires_at_s"], issued_at_ms=at_ms)  # fmt: skip
            what = f"invoice {data['payment_hash']} issued, expires at {data['expires_at_s']}"
        case "InvoicePaid":
            doc.update(
                paid_at_ms=at_ms, settled_at_ms=at_ms, pay_index=data["pay_index"],
                amount_received_msat=int(data["amount_received_msat"]),
                paid_late=bool(data.get("late")),
            )  # fmt: skip
            late = " (after its expiry was recorded)" if data.get("late") else ""
            what = f"paid: {data['amount_received_msat']} msat received{late}"
        case "InvoiceExpired":
            what = "expired unpaid (the node's word)"
        case "ReceiveFailed":
            doc["failure_reason"] = data["reason"]
            what = f"failed: {data['reason']}" + (
                f" ({data['detail']})" if data.get("detail") else ""
            )
    add_to_timeline(doc, event, what)
    return doc
