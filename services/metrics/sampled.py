"""Series sampled from PostgreSQL (the log's head, the relay's checkpoint, the read models) and
from JetStream (the executors' consumers), every ``interval_s`` by an async task; a scrape
reads the newest sample and never waits for a database (ADR 0153).

- ``corridor_intents{state}``: intents by state, from the ``intents`` projection;
- ``corridor_exceptions_open{kind}``: the exception queue by kind (``in_doubt`` counts an intent
  on the wire past ``stuck_after_s``);
- ``corridor_intents_on_wire_oldest_age_seconds``: the oldest payment on the wire (0 if none);
- ``corridor_relay_lag_events``: events committed but not yet published to JetStream;
- ``corridor_projection_lag_events{projection}``: events not yet folded into a read model;
- ``corridor_reconciliation_mismatches{category}`` (counter) and
  ``corridor_reconciliation_open_items{category}``: found ever, and open now;
- ``corridor_breaker_tripped{region,node}``: 1 while a node's breaker is tripped;
- ``corridor_executor_consumer_pending{consumer}`` / ``..._ack_pending`` / ``..._waiting``:
  work orders not yet delivered, delivered but not acknowledged, and pulls waiting, per
  executor's durable consumer on ``CORRIDOR_DISPATCH`` (an executor pulling has waiting > 0);
- ``corridor_metrics_sample_age_seconds``: how old the sample is (stale when sampling fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import msgspec
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from projections.intents import exception_of
from services.relay.checkpoint import CHECKPOINT as RELAY_CHECKPOINT

log = structlog.get_logger("corridor.metrics")

SAMPLE_INTERVAL_S: Final = 30.0
_decode = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    consumer: str
    pending: int
    ack_pending: int
    waiting: int


ConsumerSource = Callable[[], Awaitable[Sequence[ConsumerLag]]]


@dataclass
class Sample:
    at_ms: int = 0
    intents_by_state: dict[str, int] = field(default_factory=dict)
    exceptions_by_kind: dict[str, int] = field(default_factory=dict)
    oldest_on_wire_age_s: float = 0.0
    relay_lag: int = 0
    projection_lag: dict[str, int] = field(default_factory=dict)
    mismatches_found: dict[str, int] = field(default_factory=dict)
    mismatches_open: dict[str, int] = field(default_factory=dict)
    breakers: dict[tuple[str, str], int] = field(default_factory=dict)
    consumers: list[ConsumerLag] = field(default_factory=list)


async def take_sample(
    pool: asyncpg.Pool,
    *,
    now_ms: int,
    stuck_after_s: int,
    consumers: ConsumerSource | None = None,
) -> Sample:
    sample = Sample(at_ms=now_ms)
    async with pool.acquire() as conn:
        head = int(await conn.fetchval("SELECT position FROM event_log_head"))
        relay = await conn.fetchval(
            "SELECT position FROM checkpoints WHERE name = $1", RELAY_CHECKPOINT
        )
        sample.relay_lag = head - int(relay or 0)
        for row in await conn.fetch("SELECT projection, position FROM projection_checkpoints"):
            if "#" not in row["projection"]:  # not a rebuild's shadow
                sample.projection_lag[row["projection"]] = head - int(row["position"])
        for row in await conn.fetch(
            "SELECT doc->>'state' AS state, count(*) AS n FROM projection_rows"
            " WHERE projection = 'intents' GROUP BY 1"
        ):
            sample.intents_by_state[str(row["state"])] = int(row["n"])
        # Only the fields the exception rules read, not the documents with their timelines.
        open_docs = [
            _decode.decode(r["doc"])
            for r in await conn.fetch(
                "SELECT jsonb_build_object("
                "'intent_id', doc->'intent_id', 'state', doc->'state', 'region', doc->'region',"
                " 'node', doc->'node', 'on_wire_since_ms', doc->'on_wire_since_ms',"
                " 'doubt_reason', doc->'doubt_reason', 'unproven', doc->'unproven',"
                " 'escalated', doc->'escalated', 'anomalies', doc->'anomalies')::text AS doc"
                " FROM projection_rows WHERE projection = 'intents' AND open"
            )
        ]
        for row in await conn.fetch(
            "SELECT doc->>'kind' AS kind, doc->>'category' AS category, doc->>'region' AS region,"
            " doc->>'node' AS node, open, count(*) AS n FROM projection_rows"
            " WHERE projection = 'reconciliation' GROUP BY 1, 2, 3, 4, 5"
        ):
            if row["kind"] == "breaker":
                key = (str(row["region"]), str(row["node"]))
                sample.breakers[key] = max(sample.breakers.get(key, 0), 1 if row["open"] else 0)
                continue
            category, n = str(row["category"]), int(row["n"])
            sample.mismatches_found[category] = sample.mismatches_found.get(category, 0) + n
            if row["open"]:
                sample.mismatches_open[category] = sample.mismatches_open.get(category, 0) + n
    on_wire = [d["on_wire_since_ms"] for d in open_docs if d["on_wire_since_ms"] is not None]
    sample.oldest_on_wire_age_s = max(0, now_ms - min(on_wire)) / 1000 if on_wire else 0.0
    for doc in open_docs:
        for item in exception_of(doc, now_ms=now_ms, stuck_after_ms=stuck_after_s * 1000):
            kind = str(item["kind"])
            sample.exceptions_by_kind[kind] = sample.exceptions_by_kind.get(kind, 0) + 1
    for category, n in sample.mismatches_open.items():
        kind = f"reconciliation:{category}"
        sample.exceptions_by_kind[kind] = sample.exceptions_by_kind.get(kind, 0) + n
    if consumers is not None:
        sample.consumers = list(await consumers())
    return sample


class SampledCollector(Collector):
    """Serves the newest ``Sample``; ``run`` refreshes it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        stuck_after_s: int,
        consumers: ConsumerSource | None = None,
        interval_s: float = SAMPLE_INTERVAL_S,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self._pool = pool
        self._stuck_after_s = stuck_after_s
        self._consumers = consumers
        self._interval_s = interval_s
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.sample = Sample()
        self.failures = 0

    async def refresh(self) -> None:
        self.sample = await take_sample(
            self._pool, now_ms=self._now_ms(), stuck_after_s=self._stuck_after_s,
            consumers=self._consumers,
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # a database restarting: the age series shows it
                self.failures += 1
                log.warning("metrics_sample_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)

    def sample_age_s(self) -> float:
        """Seconds since the newest sample (infinite before the first)."""
        at_ms = self.sample.at_ms
        return max(0, self._now_ms() - at_ms) / 1000 if at_ms else float("inf")

    def collect(self) -> Iterable[Metric]:
        s = self.sample
        yield _gauge("corridor_intents", "Intents by state (read model).", "state",
                     s.intents_by_state)  # fmt: skip
        yield _gauge("corridor_exceptions_open", "Open exception-queue items, by kind.", "kind",
                     s.exceptions_by_kind)  # fmt: skip
        yield GaugeMetricFamily(
            "corridor_intents_on_wire_oldest_age_seconds",
            "Age of the oldest payment on the wire (0 if none).",
            value=s.oldest_on_wire_age_s,
        )
        yield GaugeMetricFamily(
            "corridor_relay_lag_events",
            "Events committed to the log and not yet published to JetStream.",
            value=s.relay_lag,
        )
        yield _gauge("corridor_projection_lag_events", "Events not yet folded, per read model.",
                     "projection", s.projection_lag)  # fmt: skip
        found = CounterMetricFamily(
            "corridor_reconciliation_mismatches",
            "Reconciliation mismatches found, by category.",
            labels=["category"],
        )
        for category, n in sorted(s.mismatches_found.items()):
            found.add_metric([category], n)
        yield found
        yield _gauge("corridor_reconciliation_open_items", "Open reconciliation items.",
                     "category", s.mismatches_open)  # fmt: skip
        breakers = GaugeMetricFamily(
            "corridor_breaker_tripped", "1 while the node's circuit breaker is tripped.",
            labels=["region", "node"],
        )  # fmt: skip
        for (region, node), tripped in sorted(s.breakers.items()):
            breakers.add_metric([region, node], tripped)
        yield breakers
        for suffix, what, attr in (
            ("pending", "Work orders not yet delivered to the executor.", "pending"),
            ("ack_pending", "Work orders delivered, not yet acknowledged.", "ack_pending"),
            ("waiting", "Pull requests the executor has waiting.", "waiting"),
        ):
            family = GaugeMetricFamily(
                f"corridor_executor_consumer_{suffix}", what, labels=["consumer"]
            )
            for lag in s.consumers:
                family.add_metric([lag.consumer], getattr(lag, attr))
            yield family
        yield GaugeMetricFamily(
            "corridor_metrics_sample_age_seconds", "Age of the newest sample.",
            value=self.sample_age_s(),
        )  # fmt: skip


def _gauge(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def jetstream_consumers(js: Any, stream: str) -> ConsumerSource:
    """The durable consumers of ``stream`` (nats-py JetStream context)."""

    async def read() -> Sequence[ConsumerLag]:
        infos = await js.consumers_info(stream)
        return [
            ConsumerLag(consumer=i.name, pending=int(i.num_pending or 0),
                        ack_pending=int(i.num_ack_pending or 0), waiting=int(i.num_waiting or 0))
            for i in infos
        ]  # fmt: skip

    return read
