"""One node's reconciliation pass: page the node's list, read our log, compare, report.

Order matters. The node's list is read first and our log after it: the engine commits an
attempt's ``IntentDispatched`` before any executor can send it, so every payment the node lists
already has its dispatch in the log we read next, and a payment with none was made behind our
back. The node's list is paged from a stored cursor (``checkpoints``
``recon-index-<node>``), which moves only past records that are final, so a payment in flight
is listed again until it ends, and a restart resumes where the last pass stopped. Our attempts
that became final since the last pass (``recon-log-<node>``), and hashes of items still open,
are looked up one by one. Findings go to the engine as a command (ADR 0151), and the cursors
with the pass's last report: the engine stores them once it committed the report (ADR 0163),
so a crash between the two repeats a pass, which finds nothing new (one item per key), and the
worker itself only reads the database (the auditor role will do).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from schemas.reconciliation_messages import (
    FINDINGS_PER_REPORT_MAX,
    MismatchFinding,
    PassCursor,
    ReconciliationCommandAccepted,
    ReportReconciliation,
    reconciliation_stream,
)
from schemas.upcasting import upcast_record
from services.bus.port import NoResponders
from services.domain.reconciliation.attempts import ATTEMPT_EVENTS, Folded, fold_attempts
from services.domain.reconciliation.compare import Category, Mismatch, NodeRecord, compare, merge
from services.domain.reconciliation.ledger import NodeLedger, evolve
from services.engine.event_codec import to_domain
from services.engine.reconciliation_cursor import index_checkpoint, log_checkpoint
from services.eventstore.port import EventStore, StoredEvent
from services.lightning.port import NodeError, NodePaymentRecord, NodePort
from services.reconciliation.client import ReportRefused
from services.reconciliation.node_view import from_list, look_up
from services.reconciliation.receipts_pass import receipt_mismatches

log = structlog.get_logger("corridor.reconciliation")

# Error texts copied into log lines are bounded: a node's message can be long.
ERROR_CHARS_MAX: Final = 200

Report = Callable[[ReportReconciliation], Awaitable[ReconciliationCommandAccepted]]


@dataclass(frozen=True, slots=True)
class PassConfig:
    in_flight_bound_ms: int
    lookback_ms: int
    page_max: int
    pages_max: int
    trip_breaker: bool


@dataclass(slots=True)
class PassResult:
    node: str
    listed: int = 0
    looked_up: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    consistent: list[str] = field(default_factory=list)
    replies: list[ReconciliationCommandAccepted] = field(default_factory=list)

    @property
    def new_items(self) -> int:
        return sum(reply.found for reply in self.replies)


class ReconciliationWorker:
    def __init__(
        self,
        *,
        node: str,
        region: str,
        adapter: NodePort,
        store: EventStore,
        report: Report,
        now_ms: Callable[[], int],
        config: PassConfig,
    ) -> None:
        self._node = node
        self._region = region
        self._adapter = adapter
        self._store = store
        self._report = report
        self._now_ms = now_ms
        self._config = config
        # Monotonic time of the last pass that finished: what a readiness probe judges.
        self.last_pass_at: float | None = None

    async def run_once(self) -> PassResult:
        node = self._node
        result = PassResult(node=node)
        names = (index_checkpoint(node), log_checkpoint(node))
        cursors = await self._store.get_checkpoints(names)
        index_after, log_after = cursors.get(names[0], 0), cursors.get(names[1], 0)
        listed, index_next = await self._page(index_after)
        result.listed = len(listed)
        now_ms = self._now_ms()
        since_ms = now_ms - self._config.lookback_ms
        folded, log_head = await self._our_attempts(since_ms)
        ledger = await self._ledger()
        records: dict[str, NodeRecord | None] = dict(merge(from_list(r) for r in listed))
        wanted = {f.attempt.payment_hash for f in folded if f.last_position > log_after}
        wanted |= {item.payment_hash for item in ledger.open.values()}
        looked, complete = await look_up(self._adapter, wanted - records.keys())
        result.looked_up = len(looked)
        records.update(looked)
        result.mismatches = compare(
            [f.attempt for f in folded], records, now_ms=now_ms,
            in_flight_bound_ms=self._config.in_flight_bound_ms,
            unexpected_since_s=since_ms // 1000,
        )  # fmt: skip
        # Receives (ADR 0220): our receipts against the node's invoices.
        receipts, invoices_asked = await receipt_mismatches(
            self._store, self._adapter, node=node, since_ms=since_ms, log_after=log_after,
            open_hashes={i.payment_hash for i in ledger.open.values()}, now_ms=now_ms,
            settle_bound_ms=self._config.in_flight_bound_ms,
        )  # fmt: skip
        result.looked_up += len(invoices_asked)
        result.mismatches = sorted(
            [*result.mismatches, *receipts], key=lambda m: (m.payment_hash, m.category)
        )
        examined = set(records) | invoices_asked
        result.consistent = _consistent(ledger, result.mismatches, examined)
        # A capped look-up leaves our log cursor where it was: the rest are asked next pass.
        cursor = PassCursor(index_after=index_next, log_after=log_head if complete else log_after)
        result.replies = await self._send(result.mismatches, result.consistent, cursor)
        log.info(
            "reconciliation_pass", node=node, listed=result.listed, looked_up=result.looked_up,
            mismatches=len(result.mismatches), new_items=result.new_items,
            resolved=sum(r.resolved for r in result.replies),
        )  # fmt: skip
        return result

    async def run(self, *, interval_s: float, stop: asyncio.Event) -> None:
        """A pass every ``interval_s`` until ``stop``; a pass the node or the engine could not
        finish is logged and tried again next time (its cursors did not move)."""
        assert interval_s > 0, "interval_s must be positive"
        while not stop.is_set():
            try:
                await self.run_once()
                self.last_pass_at = time.monotonic()
            except (NodeError, TimeoutError, NoResponders, ReportRefused) as exc:
                detail = str(exc)[:ERROR_CHARS_MAX]
                log.warning("reconciliation_pass_failed", node=self._node, detail=detail)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def _page(self, after_index: int) -> tuple[list[NodePaymentRecord], int]:
        """The node's records after the cursor, and the cursor to store: past the last record
        before the first one still in flight (that one is listed again next pass)."""
        listed: list[NodePaymentRecord] = []
        cursor, low_water, settled = after_index, after_index, True
        for _ in range(self._config.pages_max):
            page = await self._adapter.list_payments(
                after_index=cursor, limit=self._config.page_max
            )
            if not page.records:
                break
            for record in page.records:
                settled = settled and record.status != "in_flight"
                if settled:
                    low_water = record.index
            listed += page.records
            cursor = page.next_index
        return listed, low_water

    async def _our_attempts(self, since_ms: int) -> tuple[list[Folded], int]:
        records: list[dict[str, Any]] = []

        def visit(stored: StoredEvent) -> None:
            records.append(_record(stored))

        head = await self._store.scan_recent(
            types=ATTEMPT_EVENTS, recorded_since_ms=since_ms, visit=visit
        )
        return fold_attempts(records, node=self._node), head

    async def _ledger(self) -> NodeLedger:
        ledger = NodeLedger(node=self._node)
        for stored in await self._store.read_stream(reconciliation_stream(self._node)):
            ledger = evolve(ledger, to_domain(stored))
        return ledger

    async def _send(
        self, mismatches: Sequence[Mismatch], consistent: Sequence[str], cursor: PassCursor
    ) -> list[ReconciliationCommandAccepted]:
        """The findings in reports of at most ``FINDINGS_PER_REPORT_MAX``; the last one (at
        least one, even with nothing found) carries the cursor, stored once it is committed."""
        findings = [_finding(m) for m in mismatches]
        replies = []
        step = FINDINGS_PER_REPORT_MAX
        starts = range(0, max(len(findings), len(consistent), 1), step)
        for start in starts:
            report = ReportReconciliation(
                node=self._node, region=self._region, found=tuple(findings[start : start + step]),
                consistent=tuple(consistent[start : start + step]),
                trip_breaker=self._config.trip_breaker,
                cursor=cursor if start == starts[-1] else None,
            )  # fmt: skip
            replies.append(await self._report(report))
        return replies


def _consistent(ledger: NodeLedger, mismatches: Sequence[Mismatch], examined: Any) -> list[str]:
    """Open items this pass found no longer true: their hash was examined (or, for a stuck
    attempt, our log moved it) and the same disagreement was not found again."""
    still = {m.key for m in mismatches}
    return sorted(
        key
        for key, item in ledger.open.items()
        if key not in still
        and (item.payment_hash in examined or item.category == Category.STUCK_IN_FLIGHT.value)
    )


def _finding(mismatch: Mismatch) -> MismatchFinding:
    return MismatchFinding(
        key=mismatch.key,
        category=mismatch.category.value,
        payment_hash=mismatch.payment_hash,
        intent_id=mismatch.intent_id,
        attempt=mismatch.attempt,
        evidence=dict(mismatch.evidence),
    )


def _record(stored: StoredEvent) -> dict[str, Any]:
    return upcast_record(
        {
            "type": stored.type, "version": stored.schema_version, "stream_id": stored.stream_id,
            "recorded_at_ms": stored.recorded_at_ms, "data": stored.payload,
            "position": stored.position,
        }
    )  # fmt: skip
