"""Event store figures through Corridor's own code: append (single, batched) and replay."""

from __future__ import annotations

import time

from projections.pilot_metrics import PilotMetrics
from schemas import events as ev
from schemas.common import Caller
from schemas.records import EventMetadata
from services.domain.intent import fold
from services.engine.event_codec import to_domain, to_new_events
from services.eventstore.port import EventStore, NewEvent

_META = EventMetadata(correlation_id="bench", causation_id="bench", actor="bench")


def _intent_events(stream_id: str, now_ms: int) -> list[NewEvent]:
    """A realistic settled intent: the eight events a happy path writes."""
    data: list[ev.EventData] = [
        ev.IntentReceived(
            intent_id=stream_id, caller=Caller(id="bench", kind="service"),
            idempotency_key=stream_id, corridor="us-eu", amount_msat=50_000,
            max_fee_msat=1_000, destination="02" + "11" * 32, received_at_ms=now_ms,
            request_fingerprint="0" * 64,
        ),
        ev.IntentPolicyChecked(tier="auto", policy_version=1),
        ev.IntentRouted(attempt=1, region="us", node="us-lnd", reason="first"),
        ev.IntentDispatched(
            attempt=1, region="us", node="us-lnd", amount_msat=50_000, max_fee_msat=1_000,
            destination="02" + "11" * 32, pay_timeout_s=60,
        ),
        ev.PaymentSucceeded(attempt=1, payment_hash="a" * 64, preimage="b" * 64, fee_msat=3),
        ev.IntentSettled(amount_msat=50_000, fee_msat=3, total_msat=50_003, preimage="b" * 64,
                         fee_ppm=60),
    ]  # fmt: skip
    return to_new_events(stream_id, 1, data, _META, now_ms)


async def append_single_per_s(store: EventStore, events: int, tag: str) -> float:
    pending = [e for i in range(events // 6 + 1) for e in _intent_events(f"{tag}-{i}", 0)]
    pending = pending[:events]
    began = time.perf_counter()
    for event in pending:
        await store.append([event])
    return events / (time.perf_counter() - began)


async def append_batched_per_s(store: EventStore, events: int, tag: str, batch: int = 120) -> float:
    pending = [e for i in range(events // 6 + 1) for e in _intent_events(f"{tag}-{i}", 0)]
    pending = pending[:events]
    began = time.perf_counter()
    for start in range(0, events, batch):
        await store.append(pending[start : start + batch])
    return events / (time.perf_counter() - began)


async def replay_per_s(store: EventStore, page: int = 5000) -> tuple[float, int]:
    """Read the whole log and fold it into the aggregate states and the pilot metrics."""
    began = time.perf_counter()
    count = 0
    metrics = PilotMetrics()
    streams: dict[str, list[ev.EventData]] = {}
    async for batch in store.pages(page=page):
        for stored in batch:
            streams.setdefault(stored.stream_id, []).append(to_domain(stored))
            metrics.apply(
                {"type": stored.type, "version": stored.schema_version,
                 "stream_id": stored.stream_id,
                 "recorded_at_ms": stored.recorded_at_ms, "data": stored.payload}
            )  # fmt: skip
        count += len(batch)
    for history in streams.values():
        fold(history)
    metrics.report()
    elapsed = time.perf_counter() - began
    return (count / elapsed if elapsed else 0.0), count
