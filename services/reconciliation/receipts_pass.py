"""The receive half of a node's reconciliation pass (ADR 0220): our receipts on the node, read
from the log, against the node's record of each invoice (``NodePort.lookup_invoice``).

Asked each pass: receipts our log moved since the last pass, receipts still ``issued`` (the
node may have settled one the follower has not reported), and hashes of open items; at most
``LOOKUPS_PER_PASS_MAX`` of them, the rest next pass.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from schemas.upcasting import upcast_record
from services.domain.reconciliation.compare import Mismatch
from services.domain.reconciliation.receipts import (
    RECEIPT_EVENTS,
    NodeInvoice,
    compare_receipts,
    fold_receipts,
)
from services.eventstore.port import EventStore, StoredEvent
from services.lightning.port import NodePort
from services.reconciliation.node_view import LOOKUPS_PER_PASS_MAX


async def receipt_mismatches(
    store: EventStore,
    adapter: NodePort,
    *,
    node: str,
    since_ms: int,
    log_after: int,
    open_hashes: Collection[str],
    now_ms: int,
    settle_bound_ms: int,
) -> tuple[list[Mismatch], set[str]]:
    """The receipts' mismatches, and every hash the node was asked about."""
    records: list[dict[str, Any]] = []

    def visit(stored: StoredEvent) -> None:
        record = {
            "type": stored.type, "version": stored.schema_version, "stream_id": stored.stream_id,
            "recorded_at_ms": stored.recorded_at_ms, "data": stored.payload,
            "position": stored.position,
        }  # fmt: skip
        records.append(upcast_record(record))

    await store.scan_recent(types=RECEIPT_EVENTS, recorded_since_ms=since_ms, visit=visit)
    receipts = fold_receipts(records, node=node)
    wanted = sorted(
        r.payment_hash
        for r in receipts
        if r.last_position > log_after or r.status == "issued" or r.payment_hash in open_hashes
    )[:LOOKUPS_PER_PASS_MAX]
    invoices: dict[str, NodeInvoice | None] = {}
    for payment_hash in wanted:
        status = await adapter.lookup_invoice(payment_hash)
        invoices[payment_hash] = None
        if status is not None:
            invoices[payment_hash] = NodeInvoice(
                payment_hash=status.payment_hash, state=status.state,
                amount_received_msat=status.amount_received_msat, paid_at_s=status.paid_at_s,
            )  # fmt: skip
    found = compare_receipts(receipts, invoices, now_ms=now_ms, settle_bound_ms=settle_bound_ms)
    return found, set(invoices)
