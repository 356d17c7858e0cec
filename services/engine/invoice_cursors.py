"""Where each node's settlement follower resumes (ADR 0221): the highest ``pay_index`` of that
node that the log has an ``InvoicePaid`` for. The log is the durable checkpoint: a follower
reports each settlement in pay order and waits for its commit, so every settlement at or
below the highest recorded one is recorded (or not ours). Folded incrementally from the log."""

from __future__ import annotations

from typing import Final

from services.eventstore.port import EventStore

PAID_TYPES: Final = ("InvoicePaid",)
# Events per read while folding: one query per this many.
LOAD_PAGE_EVENTS: Final = 5_000


class InvoiceCursors:
    def __init__(self) -> None:
        self._by_node: dict[str, int] = {}
        self.position = 0  # the last log position folded

    def of(self, node: str) -> int:
        return self._by_node.get(node, 0)

    async def catch_up(self, store: EventStore) -> None:
        head = await store.head_position()
        while self.position < head:
            page = await store.read_from(
                after_position=self.position, through_position=head, types=PAID_TYPES,
                limit=LOAD_PAGE_EVENTS,
            )  # fmt: skip
            if not page:
                break
            for stored in page:
                node, index = stored.payload.get("node"), stored.payload.get("pay_index")
                if isinstance(node, str) and isinstance(index, int):
                    self._by_node[node] = max(self._by_node.get(node, 0), index)
            self.position = page[-1].position
            if len(page) < LOAD_PAGE_EVENTS:
                break
        self.position = max(self.position, head)
