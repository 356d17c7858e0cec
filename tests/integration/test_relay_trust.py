"""The relay trusts no header it did not write (ADR 0062): a message someone else put into
``CORRIDOR_EVT`` never makes it rewind, re-publish, or stop fencing.

Each test publishes the way an attacker who got past the streams' permissions would, with
the test's own connection. What the relay re-publishes is seen on a plain subscription to the
streams' subjects, which receives every publish, duplicates JetStream drops included.
"""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.bus.jetstream import ensure_streams
from services.relay.outbox import CHECKPOINT
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit

EVENTS_PER_INTENT = 4


async def _started_engine(nats_url: str, database_url: str, **settings: object) -> Engine:
    engine = await bootstrap(
        Settings(relay_poll_s=0.2, **settings),  # type: ignore[arg-type]
        nats_url=nats_url,
        database_url=database_url,
    )
    await engine.start()
    await wait_for(engine.relay.leader.is_set, what="the relay to lead")
    return engine


async def _submit(nc: Client, keys: range) -> None:
    for i in keys:
        msg = await nc.request(
            "corridor.api.v1.intents.submit.alice",
            json.dumps(submit(key=f"t{i}")).encode(),
            timeout=10,
        )
        assert json.loads(msg.data)["ok"], msg.data


async def _published_and_saved(nats_url: str, database_url: str, nc: Client, intents: int) -> int:
    """Run an engine until ``intents`` intents' events are published and checkpointed."""
    engine = await _started_engine(nats_url, database_url)
    head = intents * EVENTS_PER_INTENT
    try:
        await _submit(nc, range(intents))

        async def saved() -> bool:
            return await engine.store.get_checkpoint(CHECKPOINT) == head

        await wait_for(saved, what=f"the relay to publish and save position {head}")
    finally:
        await engine.stop()
    return head


class _Publishes:
    """Every message published on the event and dispatch subjects, as the relay sent it."""

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.orders = 0

    async def on_event(self, msg: Msg) -> None:
        self.positions.append(int((msg.headers or {}).get(subjects.HDR_POSITION, "0")))

    async def on_order(self, _msg: Msg) -> None:
        self.orders += 1

    async def watch(self, nc: Client) -> None:
        await nc.subscribe(subjects.EVT_WILDCARD, cb=self.on_event)
        await nc.subscribe(subjects.DISPATCH_WILDCARD, cb=self.on_order)
        await nc.flush()


async def _messages(nc: Client, stream: str) -> int:
    return (await nc.jetstream().stream_info(stream)).state.messages


async def _resume_and_publish_one_more(
    nats_url: str, database_url: str, nc: Client, head: int, **settings: object
) -> tuple[_Publishes, Engine]:
    """Start the engine again over the tampered stream, submit one intent, and return what
    was published on the way."""
    seen = _Publishes()
    await seen.watch(nc)
    engine = await _started_engine(nats_url, database_url, **settings)
    try:
        await _submit(nc, range(1000, 1001))
        await wait_for(
            lambda: engine.relay.position == head + EVENTS_PER_INTENT,
            what="the relay to publish the new intent",
        )
        await wait_for(
            lambda: head + EVENTS_PER_INTENT in seen.positions,
            what="the new intent's events on the subscription",
        )
    finally:
        await engine.stop()
    return seen, engine


async def test_a_foreign_position_header_neither_rewinds_nor_republishes(
    nats_url: str, database_url: str, nc: Client
) -> None:
    head = await _published_and_saved(nats_url, database_url, nc, intents=5)
    js = nc.jetstream()
    await js.publish(
        "corridor.evt.v1.intent.IntentReceived", b"{}", headers={subjects.HDR_POSITION: "1"}
    )
    events_before = await _messages(nc, subjects.EVT_STREAM)
    orders_before = await _messages(nc, subjects.DISPATCH_STREAM)

    seen, engine = await _resume_and_publish_one_more(nats_url, database_url, nc, head)

    # Only the new intent went out: four events and one work order, nothing re-published.
    assert seen.positions == list(range(head + 1, head + EVENTS_PER_INTENT + 1))
    assert seen.orders == 1
    assert await _messages(nc, subjects.EVT_STREAM) == events_before + EVENTS_PER_INTENT
    assert await _messages(nc, subjects.DISPATCH_STREAM) == orders_before + 1
    assert engine.relay.foreign_messages == 1


async def test_a_forged_huge_position_does_not_switch_the_fence_off(
    nats_url: str, database_url: str, nc: Client
) -> None:
    # Positions the stream seems to hold go out unfenced (ADR 0013): a forged position far
    # ahead would have switched the fence off for every event up to it.
    head = await _published_and_saved(nats_url, database_url, nc, intents=2)
    await nc.jetstream().publish(
        "corridor.dispatch.v1.us.us-lnd", b"{}", headers={subjects.HDR_POSITION: str(10**9)}
    )
    _, engine = await _resume_and_publish_one_more(nats_url, database_url, nc, head)
    assert engine.relay.maybe_published_through == head
    assert engine.relay.foreign_messages == 1


async def test_a_replayed_genuine_message_does_not_rewind_the_relay(
    nats_url: str, database_url: str, nc: Client
) -> None:
    """A copy of the relay's own first message, re-published once JetStream's duplicate window
    has passed: its id and hash match the log, yet the stream lost nothing."""
    window = {"jetstream_duplicate_window_s": 1}
    engine = await _started_engine(nats_url, database_url, **window)
    head = 3 * EVENTS_PER_INTENT
    try:
        await _submit(nc, range(3))

        async def saved() -> bool:
            return await engine.store.get_checkpoint(CHECKPOINT) == head

        await wait_for(saved, what="the relay to save its checkpoint")
    finally:
        await engine.stop()
    js = nc.jetstream()
    first = await js.get_msg(subjects.EVT_STREAM, seq=1)
    headers = {k: v for k, v in (first.headers or {}).items() if not k.startswith("Nats-")}
    headers[subjects.HDR_MSG_ID] = (first.headers or {})[subjects.HDR_MSG_ID]

    async def replayed() -> bool:
        assert first.subject is not None
        ack = await js.publish(first.subject, first.data or b"", headers=headers)
        return not ack.duplicate

    await wait_for(replayed, what="JetStream to store the copy once its window passed")
    events_before = await _messages(nc, subjects.EVT_STREAM)

    seen, engine = await _resume_and_publish_one_more(nats_url, database_url, nc, head, **window)

    assert seen.positions == list(range(head + 1, head + EVENTS_PER_INTENT + 1))
    assert await _messages(nc, subjects.EVT_STREAM) == events_before + EVENTS_PER_INTENT


async def test_a_lost_stream_is_refilled_whatever_a_foreign_tail_claims(
    nats_url: str, database_url: str, nc: Client
) -> None:
    """Genuine resumption: JetStream lost the event stream, and someone wrote to the new one
    claiming a position far ahead. The relay re-publishes every event, in order."""
    head = await _published_and_saved(nats_url, database_url, nc, intents=3)
    js = nc.jetstream()
    await js.delete_stream(subjects.EVT_STREAM)
    await ensure_streams(js, duplicate_window_s=120)
    foreign = "corridor.evt.v1.intent.Foreign"
    await js.publish(foreign, b"{}", headers={subjects.HDR_POSITION: str(head + 100)})

    await _resume_and_publish_one_more(nats_url, database_url, nc, head)

    positions = []
    for seq in range(1, head + EVENTS_PER_INTENT + 2):
        msg = await js.get_msg(subjects.EVT_STREAM, seq=seq)
        if msg.subject != foreign:
            positions.append(int((msg.headers or {})[subjects.HDR_POSITION]))
    assert positions == list(range(1, head + EVENTS_PER_INTENT + 1))


async def test_a_foreign_tail_longer_than_the_scan_is_not_trusted(
    nats_url: str, database_url: str, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More foreign messages than the relay reads back: it cannot tell where its own end, and
    it neither rewinds nor fences what may already be in the stream."""
    from services.relay import start

    monkeypatch.setattr(start, "TAIL_SCAN_MSGS_MAX", 3)
    head = await _published_and_saved(nats_url, database_url, nc, intents=2)
    js = nc.jetstream()
    for _ in range(start.TAIL_SCAN_MSGS_MAX + 1):
        await js.publish(
            "corridor.evt.v1.intent.IntentReceived", b"{}", headers={subjects.HDR_POSITION: "1"}
        )
    seen, engine = await _resume_and_publish_one_more(nats_url, database_url, nc, head)
    assert seen.positions == list(range(head + 1, head + EVENTS_PER_INTENT + 1))
    assert engine.relay.foreign_messages == start.TAIL_SCAN_MSGS_MAX
