"""What each node's receive executor asks the engine about its invoices (ADR 0221), folded
incrementally from the log's ``InvoiceIssued``, ``InvoicePaid`` and ``InvoiceExpired``:

- the **cursor**: the highest ``pay_index`` of the node with an ``InvoicePaid``, where its
  settlement follower resumes. The log is the durable checkpoint: a follower reports each
  settlement in pay order and waits for its commit, so every settlement at or below the
  highest recorded one is recorded (or not ours);
- the **open invoices** (issued, neither paid nor expired) and their expiry, which the
  executor's expiry watch asks the node about once they are past it.

Memory holds the open invoices only; a paid or expired one is dropped.
"""

from __future__ import annotations

from typing import Final

from services.eventstore.port import EventStore

INVOICE_TYPES: Final = ("InvoiceIssued", "InvoicePaid", "InvoiceExpired")
# Events per read while folding: one query per this many.
LOAD_PAGE_EVENTS: Final = 5_000


class InvoiceCursors:
    def __init__(self) -> None:
        self._by_node: dict[str, int] = {}
        # node -> intent id -> (payment hash, expires at, s)
        self._open: dict[str, dict[str, tuple[str, int]]] = {}
        self.position = 0  # the last log position folded

    def of(self, node: str) -> int:
        return self._by_node.get(node, 0)

    def expired(self, node: str, *, before_s: int, limit: int) -> list[tuple[str, str]]:
        """``(intent id, payment hash)`` of the node's open invoices that expired before
        ``before_s``, oldest expiry first, at most ``limit``."""
        due = [
            (expires_at_s, intent_id, payment_hash)
            for intent_id, (payment_hash, expires_at_s) in self._open.get(node, {}).items()
            if expires_at_s < before_s
        ]
        return [(intent_id, payment_hash) for _, intent_id, payment_hash in sorted(due)[:limit]]

    async def catch_up(self, store: EventStore) -> None:
        head = await store.head_position()
        while self.position < head:
            page = await store.read_from(
                after_position=self.position, through_position=head, types=INVOICE_TYPES,
                limit=LOAD_PAGE_EVENTS,
            )  # fmt: skip
            if not page:
                break
            for stored in page:
                node = stored.payload.get("node")
                if not isinstance(node, str):
                    continue
                open_here = self._open.setdefault(node, {})
                if stored.type == "InvoiceIssued":
                    expires_at_s = stored.payload.get("expires_at_s")
                    payment_hash = stored.payload.get("payment_hash")
                    if isinstance(expires_at_s, int) and isinstance(payment_hash, str):
                        open_here[stored.stream_id] = (payment_hash, expires_at_s)
                    continue
                open_here.pop(stored.stream_id, None)
                index = stored.payload.get("pay_index")
                if stored.type == "InvoicePaid" and isinstance(index, int):
                    self._by_node[node] = max(self._by_node.get(node, 0), index)
            self.position = page[-1].position
            if len(page) < LOAD_PAGE_EVENTS:
                break
        self.position = max(self.position, head)
