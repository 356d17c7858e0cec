"""An executor's receive queries (ADR 0221), on its status subject
``corridor.api.v1.intents.status.executor.<node>``, each only for its own node: where the
settlement follower resumes, and which open invoices are past their expiry."""

from __future__ import annotations

from schemas import errors
from schemas.receive_messages import (
    ExpiredInvoices,
    GetExpiredInvoices,
    GetInvoiceCursor,
    InvoiceCursor,
    OpenInvoice,
)
from services.domain.principal import Principal
from services.engine.processor import CommandProcessor

RECEIVE_QUERIES = (GetInvoiceCursor, GetExpiredInvoices)


async def answer_receive_query(
    query: GetInvoiceCursor | GetExpiredInvoices,
    reader: Principal | None,
    processor: CommandProcessor,
) -> InvoiceCursor | ExpiredInvoices:
    own = reader is not None and reader.role == "executor" and reader.id == query.node
    if reader is not None and reader.role not in ("engine", "operator", "auditor") and not own:
        raise errors.Forbidden(
            f"{reader.actor} may not read node {query.node}'s invoices", field="node"
        )
    book = processor.invoice_cursors
    await book.catch_up(processor.store)
    if isinstance(query, GetInvoiceCursor):
        return InvoiceCursor(node=query.node, pay_index=book.of(query.node))
    due = book.expired(query.node, before_s=query.before_s, limit=query.limit)
    return ExpiredInvoices(
        node=query.node,
        invoices=tuple(OpenInvoice(intent_id=i, payment_hash=h) for i, h in due),
    )
