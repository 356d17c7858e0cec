"""The relay publishes every intent event under its owner's subtree (ADR 0067): events the
engine has just written (the owner is in their metadata, no lookup), events written before
owners were recorded (one read of the log per batch), and both again when the relay catches
up from the log after a restart."""

from __future__ import annotations

import asyncio
import json

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from schemas import events as ev
from schemas.common import Caller
from schemas.records import EventMetadata
from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.engine.event_codec import to_new_events
from services.engine.ids import intent_id_for
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit


async def _started(nats_url: str, database_url: str) -> Engine:
    engine = await bootstrap(
        Settings(relay_poll_s=0.2), nats_url=nats_url, database_url=database_url
    )
    await engine.start()
    return engine


async def _submit(nc: Client, caller: str, keys: range) -> None:
    replies = await asyncio.gather(
        *(
            nc.request(
                f"{subjects.API_PREFIX}.submit.{caller}",
                json.dumps(submit(key=f"{caller}-{i}", caller_id=caller)).encode(),
                timeout=10,
            )
            for i in keys
        )
    )
    assert all(json.loads(r.data)["ok"] for r in replies)


async def _caught_up(engine: Engine) -> None:
    head = await engine.store.head_position()
    await wait_for(lambda: engine.relay.position >= head, what=f"the relay at {head}")


async def _published(nc: Client) -> dict[int, str]:
    """Log position -> subject, for every message in CORRIDOR_EVT (the last one wins)."""
    js = nc.jetstream()
    info = await js.stream_info(subjects.EVT_STREAM)
    sub = await js.pull_subscribe(
        subjects.EVT_WILDCARD, stream=subjects.EVT_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )  # fmt: skip
    out: dict[int, str] = {}
    try:
        while len(out) < info.state.messages:
            for msg in await sub.fetch(info.state.messages - len(out), timeout=5):
                assert msg.headers is not None
                out[int(msg.headers[subjects.HDR_POSITION])] = msg.subject
    finally:
        await sub.unsubscribe()
    return out


async def _expected(engine: Engine) -> dict[int, str]:
    """Where each logged event belongs: its intent's caller's subtree."""
    owners: dict[str, str] = {}
    expected = {}
    for event in await engine.store.read_all(after_position=0, limit=10_000):
        if event.type == "IntentReceived":
            owners[event.stream_id] = event.payload["caller"]["id"]
        if event.stream_id in owners:
            expected[event.position] = subjects.intent_event_subject(
                owners[event.stream_id], event.type
            )
    return expected


async def test_each_intent_event_is_published_under_its_owner_old_new_and_caught_up(
    nats_url: str, database_url: str, nc: Client
) -> None:
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    # An intent of bob's, logged by a release that recorded no owner in the metadata.
    old_id = intent_id_for("bob", "before-0067")
    received = ev.IntentReceived(
        intent_id=old_id, caller=Caller(id="bob", kind="service"),
        idempotency_key="before-0067", corridor="us-eu", amount_msat=50_000,
        max_fee_msat=1_000, destination="02" + "11" * 32, received_at_ms=1,
        request_fingerprint="f",
    )  # fmt: skip
    meta = EventMetadata(correlation_id=old_id, causation_id="k", actor="caller:bob")
    await engine.store.append(to_new_events(old_id, 1, [received], meta, 1))
    await engine.store.close()

    engine = await _started(nats_url, database_url)
    try:
        await _submit(nc, "alice", range(3))
        await _submit(nc, "carol", range(2))
        await _caught_up(engine)
        # One read of the log, for bob's old event only.
        assert engine.relay.owners.reads == 1
        await _submit(nc, "alice", range(3, 8))
        await _caught_up(engine)
        assert engine.relay.owners.reads == 1, "the steady state read the log"
        expected = await _expected(engine)
        assert expected[1] == subjects.intent_event_subject("bob", "IntentReceived")
        assert {s.split(".")[4] for s in expected.values()} == {"alice", "bob", "carol"}
        published = await _published(nc)
        assert {p: published[p] for p in expected} == expected
    finally:
        await engine.stop()

    # The stream is lost; a fresh engine's relay re-publishes the whole log from the table.
    await nc.jetstream().delete_stream(subjects.EVT_STREAM)
    engine = await _started(nats_url, database_url)
    try:
        await _caught_up(engine)
        published = await _published(nc)
        assert {p: published[p] for p in expected} == expected
        assert engine.relay.handed_over == 0  # all of it read back from the log
    finally:
        await engine.stop()
