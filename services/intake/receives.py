"""An executor's settlement follower asks where to resume (ADR 0221), on its status subject
``corridor.api.v1.intents.status.executor.<node>``: only for its own node."""

from __future__ import annotations

from schemas import errors
from schemas.receive_messages import GetInvoiceCursor, InvoiceCursor
from services.domain.principal import Principal
from services.engine.processor import CommandProcessor


async def answer_cursor(
    query: GetInvoiceCursor, reader: Principal | None, processor: CommandProcessor
) -> InvoiceCursor:
    own = reader is not None and reader.role == "executor" and reader.id == query.node
    if reader is not None and reader.role not in ("engine", "operator", "auditor") and not own:
        raise errors.Forbidden(
            f"{reader.actor} may not read node {query.node}'s cursor", field="node"
        )
    await processor.invoice_cursors.catch_up(processor.store)
    return InvoiceCursor(node=query.node, pay_index=processor.invoice_cursors.of(query.node))
