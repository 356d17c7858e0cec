"""The machine's physical limits, measured on the same servers in the same run.

Raw asyncpg inserts of rows shaped like our events, and raw nats-py JetStream publishes of
messages the size of our event messages. Corridor's figures are reported as ratios to these.
The one-at-a-time operations also give their latencies: the floor under an intent's latency.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.nuid import NUID

from services.bus.fenced_publisher import FencedPublisher, OutgoingMessage

_TABLE = """CREATE TABLE IF NOT EXISTS bench_raw (
    position bigint PRIMARY KEY, event_id uuid NOT NULL, stream_id text NOT NULL,
    stream_version integer NOT NULL, type text NOT NULL, payload jsonb NOT NULL)"""
_INSERT = (
    "INSERT INTO bench_raw (position, event_id, stream_id, stream_version, type, payload)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)
PAYLOAD = (
    '{"intent_id": "6981908f-9636-51d8-b75b-08d2557a6631", "amount_msat": 50000, '
    '"max_fee_msat": 1000, "corridor": "us-eu", "region": "us", "node": "us-lnd"}'
)
MESSAGE = os.urandom(400)


def _rows(start: int, count: int) -> list[tuple[object, ...]]:
    return [
        (start + i, uuid.uuid4(), f"s-{start + i}", 1, "IntentReceived", PAYLOAD)
        for i in range(count)
    ]


async def pg_single_rows_per_s(
    dsn: str, rows: int, latencies_ms: list[float] | None = None
) -> float:
    """One transaction per row, back to back; each commit's latency goes to ``latencies_ms``."""
    timed = await pg_commits_ms(dsn, rows, gap_s=0.0)
    if latencies_ms is not None:
        latencies_ms += timed
    return rows * 1000 / sum(timed)


async def pg_batched_rows_per_s(dsn: str, rows: int, batch: int = 100) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_TABLE)
        await conn.execute("TRUNCATE bench_raw")
        data = _rows(0, rows)
        began = time.perf_counter()
        for start in range(0, rows, batch):
            async with conn.transaction():
                await conn.executemany(_INSERT, data[start : start + batch])
        return rows / (time.perf_counter() - began)
    finally:
        await conn.close()


async def js_sync_msgs_per_s(
    js: JetStreamContext, subject: str, messages: int, latencies_ms: list[float] | None = None
) -> float:
    """One publish at a time, each waiting for its acknowledgement (stored and fsynced)."""
    timed = await js_publishes_ms(js, subject, messages, gap_s=0.0)
    if latencies_ms is not None:
        latencies_ms += timed
    return messages * 1000 / sum(timed)


async def paced_ms(op: Callable[[int], Awaitable[object]], count: int, gap_s: float) -> list[float]:
    """The latency of ``op(0) .. op(count - 1)``, one at a time, ``gap_s`` apart."""
    latencies_ms = []
    for i in range(count):
        sent = time.perf_counter()
        await op(i)
        latencies_ms.append((time.perf_counter() - sent) * 1000)
        if gap_s:
            await asyncio.sleep(gap_s)  # pacing, as the bench's 10 intents/s run does
    return latencies_ms


async def pg_commits_ms(dsn: str, count: int, gap_s: float) -> list[float]:
    """Single-row inserts in autocommit, one transaction each."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_TABLE)
        await conn.execute("TRUNCATE bench_raw")
        rows = _rows(0, count)
        return await paced_ms(lambda i: conn.execute(_INSERT, *rows[i]), count, gap_s)
    finally:
        await conn.close()


async def js_publishes_ms(
    js: JetStreamContext, subject: str, count: int, gap_s: float
) -> list[float]:
    tag = NUID().next().decode()
    return await paced_ms(
        lambda i: js.publish(subject, MESSAGE, headers={"Nats-Msg-Id": f"{tag}-{i}"}),
        count,
        gap_s,
    )


async def nats_round_trips_ms(
    requester: Client, responder: Client, count: int, gap_s: float = 0.0
) -> list[float]:
    """Core NATS request/reply between two connections, one at a time."""

    async def echo(msg: Msg) -> None:
        await responder.publish(msg.reply, msg.data)

    subject = f"bench.echo.{NUID().next().decode()}"
    subscription = await responder.subscribe(subject, cb=echo)
    await responder.flush()
    try:
        # After the JetStream baselines, the first request to a new subscription can still be
        # answered "no responders" (seen on nats-server 2.12 under uvloop): untimed until one
        # is answered.
        deadline = time.monotonic() + 10
        while True:
            try:
                await requester.request(subject, MESSAGE, timeout=1)
                break
            except NoRespondersError:
                if time.monotonic() > deadline:
                    raise
        latencies_ms = await paced_ms(
            lambda _: requester.request(subject, MESSAGE, timeout=10), count, gap_s
        )
    finally:
        await subscription.unsubscribe()
    return latencies_ms


async def js_pipelined_msgs_per_s(
    js: JetStreamContext, subject: str, messages: int, window: int = 1000
) -> float:
    began = time.perf_counter()
    futures = []
    for i in range(messages):
        futures.append(
            await js.publish_async(subject, MESSAGE, headers={"Nats-Msg-Id": f"pipe-{i}-{began}"})
        )
        if len(futures) >= window:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)
    return messages / (time.perf_counter() - began)


async def js_atomic_batched_msgs_per_s(
    nc: Client, stream: str, subject: str, messages: int, batch: int = 100, window: int = 4
) -> float:
    """JetStream atomic batches of ``batch`` messages, ``window`` batches unacknowledged: the
    technique the relay uses (ADR 0013), without Corridor around it."""
    publisher = FencedPublisher(nc)
    await publisher.start()
    began = time.perf_counter()
    acks: list[asyncio.Future[int]] = []
    try:
        for start in range(0, messages, batch):
            chunk = [
                OutgoingMessage(subject, MESSAGE, {"Nats-Msg-Id": f"atomic-{i}-{began}"})
                for i in range(start, min(start + batch, messages))
            ]
            acks.append(await publisher.publish_atomic(stream, chunk, expected_last_seq=None,
                                                timeout_s=30))  # fmt: skip
            if len(acks) >= window:
                await acks.pop(0)
        await asyncio.gather(*acks)
        return messages / (time.perf_counter() - began)
    finally:
        await publisher.close()
