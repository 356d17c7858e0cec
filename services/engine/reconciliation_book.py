"""The engine's view of every node's reconciliation ledger, and the breakers it routes by.

A reconciliation command is rare (one per reconciler pass and node), so the writer reads its
node's stream before deciding it: another engine may have appended a moment ago, and the
append's stream version catches any race that is left. At start the breakers are folded from
the log, so a restart keeps a tripped node out of routing (ADR 0151).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from schemas.reconciliation_messages import (
    RECONCILIATION_EVENT_TYPES,
    RECONCILIATION_STREAM_PREFIX,
    reconciliation_stream,
)
from services.domain.reconciliation.ledger import NodeLedger, evolve
from services.engine.event_codec import to_domain
from services.eventstore.port import EventStore

# Events per read while folding the ledgers at start: one query per this many.
LOAD_PAGE_EVENTS: Final = 5_000


class ReconciliationBook:
    def __init__(self) -> None:
        self._ledgers: dict[str, NodeLedger] = {}

    def get(self, node: str) -> NodeLedger:
        return self._ledgers.get(node) or NodeLedger(node=node)

    def adopt(self, ledger: NodeLedger) -> None:
        held = self._ledgers.get(ledger.node)
        if held is None or ledger.version >= held.version:
            self._ledgers[ledger.node] = ledger

    def tripped(self) -> frozenset[tuple[str, str]]:
        """``(region, node)`` of every node whose breaker is tripped: the router skips them."""
        return frozenset((led.region, led.node) for led in self._ledgers.values() if led.tripped)

    async def refresh(self, store: EventStore, nodes: Collection[str]) -> None:
        """Each node's ledger as the log has it now."""
        streams = await store.read_streams([reconciliation_stream(n) for n in nodes])
        for node in nodes:
            ledger = NodeLedger(node=node)
            for stored in streams.get(reconciliation_stream(node), []):
                ledger = evolve(ledger, to_domain(stored))
            self._ledgers[node] = ledger

    async def load(self, store: EventStore) -> int:
        """Fold every node's ledger from the log; returns the events folded."""
        head = await store.head_position()
        after, folded = 0, 0
        while after < head:
            page = await store.read_from(
                after_position=after, through_position=head,
                types=RECONCILIATION_EVENT_TYPES, limit=LOAD_PAGE_EVENTS,
            )  # fmt: skip
            if not page:
                break
            for stored in page:
                node = stored.stream_id.removeprefix(RECONCILIATION_STREAM_PREFIX)
                self._ledgers[node] = evolve(self.get(node), to_domain(stored))
            folded += len(page)
            after = page[-1].position
        return folded
