"""The outbox relay: ordered, deduplicated, resumable, re-publishing what JetStream lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.relay import publisher
from services.relay.outbox import reset_checkpoint
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit


async def _drain_events(nc: Client, expected: int) -> list[dict]:
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        subjects.EVT_WILDCARD, stream="CORRIDOR_EVT",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )  # fmt: skip
    out: list[dict] = []
    while len(out) < expected:
        for msg in await sub.fetch(batch=expected - len(out), timeout=5):
            out.append(
                {
                    "position": int(msg.headers["Corridor-Position"]),
                    "msg_id": msg.headers["Nats-Msg-Id"],
                    "stream_id": msg.headers["Corridor-Stream-Id"],
                    "subject": msg.subject,
                    "body": json.loads(msg.data),
                }
            )
            await msg.ack()
    await sub.unsubscribe()
    return out


async def _started_engine(nats_url: str, database_url: str) -> Engine:
    engine = await bootstrap(
        Settings(relay_poll_s=0.2), nats_url=nats_url, database_url=database_url
    )
    await engine.start()
    return engine


async def _submit_many(nc: Client, keys: range) -> None:
    await asyncio.gather(
        *(
            nc.request(
                "corridor.api.v1.intents.submit.alice",
                json.dumps(submit(key=f"r{i}")).encode(),
                timeout=10,
            )
            for i in keys
        )
    )


async def test_events_are_published_in_order_with_headers(
    nats_url: str, database_url: str, nc: Client
) -> None:
    engine = await _started_engine(nats_url, database_url)
    try:
        await _submit_many(nc, range(10))
        await wait_for(lambda: engine.relay.position == 40, what="relay to reach position 40")
        events = await _drain_events(nc, 40)
    finally:
        await engine.stop()
    assert [e["position"] for e in events] == list(range(1, 41))
    first = events[0]
    assert first["subject"] == "corridor.evt.v2.intent.alice.IntentReceived"
    assert first["body"]["type"] == "IntentReceived" and first["body"]["version"] == 1
    assert first["body"]["event_id"] == first["msg_id"]
    assert first["body"]["stream_id"] == first["stream_id"]


async def test_relay_restart_has_no_gaps_and_no_visible_duplicates(
    nats_url: str, database_url: str, nc: Client
) -> None:
    engine = await _started_engine(nats_url, database_url)
    await _submit_many(nc, range(10))
    await wait_for(lambda: engine.relay.position == 40, what="first relay to publish 40")
    # Simulate a crash after publishing but before the checkpoint was saved.
    await engine.stop()
    from services.eventstore.postgres import PostgresEventStore
    from services.relay.outbox import CHECKPOINT

    store = await PostgresEventStore.connect(database_url)
    await store.set_checkpoint(CHECKPOINT, 25)
    await store.close()

    engine = await _started_engine(nats_url, database_url)
    try:
        await _submit_many(nc, range(10, 15))
        await wait_for(lambda: engine.relay.position == 60, what="second relay to reach 60")
        events = await _drain_events(nc, 60)
        js = nc.jetstream()
        info = await js.stream_info("CORRIDOR_EVT")
    finally:
        await engine.stop()
    # JetStream's Nats-Msg-Id dedupe dropped the 15 re-published events.
    assert info.state.messages == 60
    positions = [e["position"] for e in events]
    assert positions == list(range(1, 61))
    assert len({e["msg_id"] for e in events}) == 60


async def test_relay_republishes_what_jetstream_lost(
    nats_url: str, database_url: str, nc: Client
) -> None:
    engine = await _started_engine(nats_url, database_url)
    await _submit_many(nc, range(5))
    await wait_for(lambda: engine.relay.position == 20, what="relay to publish 20")
    await engine.stop()
    js = nc.jetstream()
    await js.delete_stream("CORRIDOR_EVT")  # JetStream loses everything, dedupe state too

    engine = await _started_engine(nats_url, database_url)
    try:
        events = await _drain_events(nc, 20)
    finally:
        await engine.stop()
    assert [e["position"] for e in events] == list(range(1, 21))


async def _publishes_every_event_across(
    nats_url: str,
    database_url: str,
    nc: Client,
    disrupt: Callable[[Engine], Awaitable[None]],
    *,
    foreign_subject: str | None = None,
) -> None:
    """12 events, then ``disrupt``, then 12 more: the relay must notice (count a failure),
    recover, and leave positions 1..24 in order in the stream (besides one message on
    ``foreign_subject``, if ``disrupt`` wrote one)."""
    engine = await _started_engine(nats_url, database_url)
    try:
        await _submit_many(nc, range(3))
        await wait_for(lambda: engine.relay.position == 12, what="relay to publish 12")
        await disrupt(engine)
        await _submit_many(nc, range(3, 6))
        await wait_for(lambda: engine.relay.failures > 0, what="the relay to notice")
        await wait_for(lambda: engine.relay.position == 24, what="relay to recover and catch up")
        if foreign_subject is None:
            events = await _drain_events(nc, 24)
        else:
            events = await _drain_events_skipping(nc, 25, foreign_subject)
    finally:
        await engine.stop()
    assert [e["position"] for e in events] == list(range(1, 25))


async def test_relay_survives_losing_its_stream_while_running(
    nats_url: str, database_url: str, nc: Client
) -> None:
    """The stream disappears under a running relay: publishes fail, the relay backs off,
    re-declares the stream, rewinds to what the stream holds, and publishes every event."""

    async def delete_stream(_: Engine) -> None:
        await nc.jetstream().delete_stream("CORRIDOR_EVT")

    await _publishes_every_event_across(nats_url, database_url, nc, delete_stream)


async def test_a_foreign_write_fences_the_relay_off_and_it_resumes_in_order(
    nats_url: str, database_url: str, nc: Client
) -> None:
    """Somebody else writes to the event stream (a deposed relay, say): the relay's next
    atomic batch no longer finds the stream where it left it, is refused whole, and the relay
    restarts, re-reads the stream and publishes every event once, in order."""

    foreign = "corridor.evt.v1.intent.Foreign"

    async def foreign_write(_: Engine) -> None:
        await nc.jetstream().publish(foreign, b"{}")

    await _publishes_every_event_across(
        nats_url, database_url, nc, foreign_write, foreign_subject=foreign
    )


async def _drain_events_skipping(nc: Client, stored: int, foreign: str) -> list[dict]:
    js = nc.jetstream()
    out = []
    for seq in range(1, stored + 1):
        msg = await js.get_msg("CORRIDOR_EVT", seq=seq)
        if msg.subject != foreign:
            assert msg.headers is not None
            out.append({"position": int(msg.headers["Corridor-Position"])})
    assert (await js.stream_info("CORRIDOR_EVT")).state.last_seq == stored
    return out


async def test_a_server_refusing_atomic_batches_gets_single_publishes(
    nats_url: str, database_url: str, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Atomic batches switched off on the stream: the refused batch is re-sent after the
    relay restarts, as single publishes from then on, with nothing lost or reordered."""
    monkeypatch.setattr(publisher, "ATOMIC_BATCH_MSGS_MIN", 1)  # every group would be atomic
    engine = await _started_engine(nats_url, database_url)
    try:
        await _submit_many(nc, range(3))
        await wait_for(lambda: engine.relay.position == 12, what="relay to publish 12")
        js = nc.jetstream()
        config = (await js.stream_info(subjects.EVT_STREAM)).config
        config.allow_atomic = False
        await js.update_stream(config)
        await _submit_many(nc, range(3, 6))
        await wait_for(lambda: engine.relay.position == 24, what="relay to publish 24")
        assert engine.relay.failures > 0
        events = await _drain_events(nc, 24)
    finally:
        await engine.stop()
    assert [e["position"] for e in events] == list(range(1, 25))


async def test_relay_saves_its_checkpoint_once_idle(
    nats_url: str, database_url: str, nc: Client
) -> None:
    from services.relay.outbox import CHECKPOINT

    engine = await _started_engine(nats_url, database_url)
    try:
        await _submit_many(nc, range(4))

        async def saved() -> bool:
            return await engine.store.get_checkpoint(CHECKPOINT) == 16

        await wait_for(saved, what="the idle relay to save checkpoint 16")
    finally:
        await engine.stop()


async def test_handed_over_events_are_published_exactly_as_the_log_holds_them(
    nats_url: str, database_url: str, nc: Client
) -> None:
    # The relay publishes what this engine just committed without reading it back, so it
    # computes the hash chain itself: every field must still match the stored row.
    # A long poll: only commits wake the relay, as on a busy engine.
    engine = await bootstrap(
        Settings(relay_poll_s=30.0), nats_url=nats_url, database_url=database_url
    )
    await engine.start()
    try:
        for i in range(10):
            await _submit_many(nc, range(i, i + 1))
            await wait_for(
                lambda i=i: engine.relay.position == 4 * (i + 1), what="relay to catch up"
            )
        events = await _drain_events(nc, 40)
        stored = await engine.store.read_all(after_position=0, limit=100)
        handed_over = engine.relay.handed_over
    finally:
        await engine.stop()
    assert handed_over > 0, "the relay read every event back: the handoff was not used"
    assert len(stored) == 40
    for event, row in zip(events, stored, strict=True):
        body = event["body"]
        assert (body["position"], body["event_id"], body["stream_version"], body["type"]) == (
            row.position,
            row.event_id,
            row.stream_version,
            row.type,
        )
        assert (body["hash"], body["prev_hash"]) == (row.hash.hex(), row.prev_hash.hex())
        assert (body["data"], body["metadata"]) == (row.payload, row.metadata)
        assert body["recorded_at_ms"] == row.recorded_at_ms


async def test_a_relay_that_loses_its_leader_connection_steps_down_and_resumes(
    nats_url: str, database_url: str, nc: Client
) -> None:
    # The leader lock is held by the relay's own connection; its reads and the handoff do not
    # use it. Without noticing the loss, a relay would keep publishing beside a new leader.
    async def cut_leader_connection(engine: Engine) -> None:
        async with engine.store.pool.acquire() as conn:
            killed = await conn.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
            )
        assert killed is True

    await _publishes_every_event_across(nats_url, database_url, nc, cut_leader_connection)


async def test_the_relay_marks_work_orders_it_may_have_published_before(
    nats_url: str, database_url: str, nc: Client
) -> None:
    # Executors skip the engine's check only for orders no worker can have seen; a relay
    # starting over a log it may have published before marks those orders as replays.
    js = nc.jetstream()
    engine = await _started_engine(nats_url, database_url)
    try:
        # Orders committed before the relay leads are marked too (it cannot know better).
        await wait_for(engine.relay.leader.is_set, what="the relay to lead")
        await _submit_many(nc, range(1))
        await wait_for(lambda: engine.relay.position == 4, what="relay to reach position 4")
        fresh = await js.get_msg(subjects.DISPATCH_STREAM, seq=1)
        await reset_checkpoint(engine.store, 0)
    finally:
        await engine.stop()
    await js.delete_stream(subjects.DISPATCH_STREAM)  # and with it, its duplicate window
    engine = await _started_engine(nats_url, database_url)
    try:
        await wait_for(lambda: engine.relay.position == 4, what="the relay to republish")
        replayed = await js.get_msg(subjects.DISPATCH_STREAM, seq=1)
    finally:
        await engine.stop()
    assert subjects.HDR_REPLAYED not in (fresh.headers or {})
    assert (replayed.headers or {}).get(subjects.HDR_REPLAYED) == "true"
    assert json.loads(replayed.data or b"") == json.loads(fresh.data or b"")
