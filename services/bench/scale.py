"""`corridor bench --scale` (ADR 0197): what limits scale-out, measured on one machine.

On 2 cores, one engine against three measures CPU contention, not scale-out, so this mode
measures the limits themselves:

- **Head-lock hold.** Every append serialises on the log's head row (``append_events``:
  ``SELECT ... FROM event_log_head FOR UPDATE`` to the commit, WAL flush included). The probe
  appends batches of the shape the end-to-end run produced (events per append, read from the
  run's log) through Corridor's own store, one at a time, so no append waits for another:
  each append's time less the median round trip of an empty statement on the same pooled
  connection is the time the lock was held, at most (the few array binds before the lock
  count too, so the ceiling is a floor). One over the median hold is the most appends per
  second one primary serialises, whatever the number of engines; times intents per append,
  the most intents per second.
- **CPU per intent by process kind**: the end-to-end run's ``cost_per_intent`` (``meter.py``).
- **A 3-node R3 cluster against one node, per message**: raw nats-py publishes with ack, one
  at a time (latency) and pipelined (throughput), with the nats-server CPU per message, on
  the stack's single server (R1) and on a 3-member cluster (R3) started here, in one run.

Nothing here touches Corridor's hot path: the probe uses the store as the engine does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import asyncpg
from nats.js import JetStreamContext
from nats.nuid import NUID

from services.bench import baselines
from services.bench.meter import cpu_s
from services.bench.stats import percentile
from services.bench.store_bench import _intent_events
from services.bus.jetstream import connect
from services.devstack import DevStack
from services.devstack.nats_cluster import NatsCluster
from services.eventstore.postgres import PostgresEventStore
from services.identity.registry import load_registry, registry_path

# Samples per figure: enough for a p99 (a few seconds each on this machine).
HOLD_SAMPLES: Final = 600
HOLD_SAMPLES_QUICK: Final = 100
CONTENDED_APPENDERS: Final = 4
# Appends as a busier engine groups them (its batch limit is 512 commands, ADR 0003).
LARGER_APPENDS_EVENTS: Final = (60, 240)
PUBLISHES_SYNC: Final = 1_000
PUBLISHES_PIPELINED: Final = 10_000
PUBLISHES_QUICK: Final = 200


async def append_shape(db_url: str) -> dict[str, float]:
    """How the engine grouped its log into appends during the run: one append is one
    transaction, so events sharing a ``xmin`` were appended together."""
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS events, count(DISTINCT xmin::text) AS appends,"
            " count(DISTINCT stream_id) FILTER (WHERE type = 'IntentReceived') AS intents"
            " FROM events"
        )
    finally:
        await conn.close()
    assert row is not None
    appends, intents = max(1, int(row["appends"])), max(1, int(row["intents"]))
    return {
        "events": int(row["events"]),
        "appends": appends,
        "intents": intents,
        "events_per_append": round(int(row["events"]) / appends, 2),
        "appends_per_intent": round(appends / intents, 2),
    }


def _batch(tag: str, index: int, size: int) -> list[Any]:
    """``size`` events of fresh intents (six per intent), as a group commit appends them."""
    events: list[Any] = []
    intent = 0
    while len(events) < size:
        events += _intent_events(f"{tag}-{index}-{intent}", 0)
        intent += 1
    return events[:size]


async def _holds_ms(
    store: PostgresEventStore, size: int, samples: int, round_trip_ms: float, tag: str
) -> list[float]:
    """Sorted hold times of ``samples`` appends of ``size`` events, one at a time."""
    batches = [_batch(tag, i, size) for i in range(samples)]
    append_ms = []
    for batch in batches:
        began = time.perf_counter()
        await store.append(batch)
        append_ms.append((time.perf_counter() - began) * 1000)
    return sorted(max(0.0, ms - round_trip_ms) for ms in append_ms)


async def head_lock_hold(
    db_url: str, *, events_per_append: float, appends_per_intent: float, quick: bool
) -> dict[str, Any]:
    samples = HOLD_SAMPLES_QUICK if quick else HOLD_SAMPLES
    size = max(1, round(events_per_append))
    store = await PostgresEventStore.connect(db_url, pool_max=CONTENDED_APPENDERS)
    try:
        await store.append(_batch("warm", 0, size))
        # The empty statement's round trip on a pooled connection, as the append takes one.
        empty_ms = []
        for _ in range(samples):
            began = time.perf_counter()
            async with store.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
            empty_ms.append((time.perf_counter() - began) * 1000)
        round_trip_ms = percentile(sorted(empty_ms), 50)
        hold_ms = await _holds_ms(store, size, samples, round_trip_ms, "hold")
        # A busier engine groups more per append (ADR 0003): how the hold grows with size.
        by_size = {}
        for larger in LARGER_APPENDS_EVENTS:
            held = await _holds_ms(store, larger, samples // 4, round_trip_ms, f"hold{larger}")
            p50_larger = percentile(held, 50)
            by_size[str(larger)] = {
                "hold_ms_p50": round(p50_larger, 3),
                "ceiling_events_per_s": round(larger * 1000 / p50_larger) if p50_larger else None,
            }
        # Cross-check: appenders at once, each waiting on the head lock for the others.
        contended = [
            [_batch(f"c{a}", i, size) for i in range(samples // CONTENDED_APPENDERS)]
            for a in range(CONTENDED_APPENDERS)
        ]

        async def appender(batches: list[list[Any]]) -> None:
            for batch in batches:
                await store.append(batch)

        began = time.perf_counter()
        await asyncio.gather(*(appender(b) for b in contended))
        contended_per_s = sum(len(b) for b in contended) / (time.perf_counter() - began)
    finally:
        await store.close()
    p50 = percentile(hold_ms, 50)
    ceiling = 1000 / p50 if p50 else None
    intents_per_append = 1 / appends_per_intent if appends_per_intent else 0.0
    return {
        "events_per_append": size,
        "samples": samples,
        "empty_round_trip_ms_p50": round(round_trip_ms, 3),
        "hold_ms": {
            "p50": round(p50, 3),
            "p95": round(percentile(hold_ms, 95), 3),
            "p99": round(percentile(hold_ms, 99), 3),
        },
        "ceiling_appends_per_s": round(ceiling) if ceiling else None,
        "ceiling_events_per_s": round(ceiling * size) if ceiling else None,
        "ceiling_intents_per_s": round(ceiling * intents_per_append) if ceiling else None,
        "larger_appends": by_size,
        "contended_appends_per_s": round(contended_per_s),
        "contended_appenders": CONTENDED_APPENDERS,
    }


async def _publish_costs(
    js: JetStreamContext, subject: str, pids: list[int], *, quick: bool
) -> dict[str, Any]:
    sync_n = PUBLISHES_QUICK if quick else PUBLISHES_SYNC
    pipe_n = PUBLISHES_QUICK * 5 if quick else PUBLISHES_PIPELINED
    cpu_before = sum(cpu_s(p) for p in pids)
    latencies = sorted(await baselines.js_publishes_ms(js, f"{subject}.sync", sync_n, gap_s=0.0))
    pipelined = await baselines.js_pipelined_msgs_per_s(js, f"{subject}.pipe", pipe_n)
    cpu_ms = (sum(cpu_s(p) for p in pids) - cpu_before) * 1000
    return {
        "sync_publish_ms": {
            "p50": round(percentile(latencies, 50), 3),
            "p99": round(percentile(latencies, 99), 3),
        },
        "sync_msgs_per_s": round(sync_n * 1000 / sum(latencies)),
        "pipelined_msgs_per_s": round(pipelined),
        "server_cpu_us_per_msg": round(cpu_ms * 1000 / (sync_n + pipe_n), 1),
    }


async def cluster_cost(stack: DevStack, *, quick: bool) -> dict[str, Any]:
    """The same publishes on the stack's own server (R1) and on a 3-member cluster (R3)."""
    out: dict[str, Any] = {"message_bytes": len(baselines.MESSAGE)}
    single = stack._nats
    assert single is not None and single.proc is not None, "needs the embedded nats-server"
    cluster = NatsCluster(
        stack.state_dir / "bench-cluster", registry=load_registry(registry_path(stack.home))
    )
    await asyncio.to_thread(cluster.start)
    try:
        for name, url, replicas, pids in (
            ("one_node_r1", stack.nats_url, 1, [single.proc.pid]),
            ("three_nodes_r3", cluster.url, 3, [m.pid for m in cluster.members]),
        ):
            nc = await connect(url, name=f"bench-{name}", creds=stack.engine_creds)
            try:
                js = nc.jetstream(publish_async_max_pending=4000)
                stream = f"BENCH_{name.upper()}"
                subject = f"bench.{name}.{NUID().next().decode()[:8]}"
                await js.add_stream(name=stream, subjects=[f"{subject}.>"], num_replicas=replicas)
                out[name] = await _publish_costs(js, subject, pids, quick=quick)
                await js.delete_stream(stream)
            finally:
                await nc.close()
    finally:
        await asyncio.to_thread(cluster.stop)
    one, three = out["one_node_r1"], out["three_nodes_r3"]
    out["r3_over_r1"] = {
        "sync_publish_ms_p50": _ratio(
            three["sync_publish_ms"]["p50"], one["sync_publish_ms"]["p50"]
        ),
        "pipelined_msgs_per_s": _ratio(three["pipelined_msgs_per_s"], one["pipelined_msgs_per_s"]),
        "server_cpu_us_per_msg": _ratio(
            three["server_cpu_us_per_msg"], one["server_cpu_us_per_msg"]
        ),
    }
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None
