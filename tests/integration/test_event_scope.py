"""Who may read which events, and who may touch which consumers and checkpoints, against a
real nats-server serving the rendered role table (ADR 0067).

- A caller or agent reads the events of its own intents only: live on its own subtree of
  ``corridor.evt.v2.intent.<owner>``, and the history through its own consumer whose filter
  the permission pins; every other JetStream way in is refused by the server.
- An operator or auditor reads the whole stream but cannot create, change or delete a
  consumer it does not own.
- The engine cannot delete, purge, update or delete messages from CORRIDOR_CHECKPOINTS, and
  creating its streams at start stays idempotent.

"Never seen" is checked by order, as in test_nats_auth.py: a probe sent after the event
arrives first only if the event was not delivered.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from services.bus import subjects
from services.bus.event_reader import consumer_name, read_history
from services.bus.jetstream import CREDS_ENV, ensure_streams
from services.devstack.nats import NatsServer
from services.identity import nats_auth
from services.identity.registry import load_registry, registry_path
from tests.conftest import wait_for
from tests.integration.test_nats_auth import Bus, user
from tests.nats_creds import connect_as

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("NATS_URL")), reason="starts its own nats-server with its own users"
)

USERS: dict[str, tuple[str, str | None]] = {
    "acme": ("caller", "service"),
    "globex": ("caller", "service"),
    "bot": ("agent", "agent"),
    "op-1": ("operator", None),
    "aud-1": ("auditor", None),
    "engine-2": ("engine", None),
}
EVT = subjects.EVT_STREAM
CREATE = f"$JS.API.CONSUMER.CREATE.{EVT}"
# What the relay publishes: two callers' intents, an agent's, a policy event, and one message
# of version 1 (the stream holds those from before ADR 0067).
EVENTS = (
    (subjects.intent_event_subject("acme", "IntentReceived"), 1),
    (subjects.intent_event_subject("globex", "IntentReceived"), 2),
    (subjects.intent_event_subject("bot", "IntentReceived"), 3),
    (f"{subjects.EVT_POLICY_PREFIX}.PolicyProposed", 4),
    (subjects.intent_event_subject("acme", "IntentSettled"), 5),
    (subjects.intent_event_subject("globex", "IntentSettled"), 6),
    (f"{subjects.EVT_V1_PREFIX}.intent.IntentSettled", 7),
)


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    home = tmp_path / "state"
    key = nats_auth.read_public_key(Path(os.environ[CREDS_ENV]))
    nats_auth.register_key(home, role="engine", ident="harness", public_key=key)
    seeds = {
        name: nats_auth.ensure(home, role=role, ident=name, kind=kind)  # type: ignore[arg-type]
        for name, (role, kind) in USERS.items()
    }
    server = NatsServer(
        tmp_path / "nats", registry=load_registry(registry_path(home)), sync_interval="2m"
    )
    server.start()
    try:
        yield Bus(server=server, home=home, seeds=seeds)
    finally:
        server.stop()


async def _publish_events(bus: Bus) -> None:
    engine = await connect_as(bus.url)
    try:
        js = engine.jetstream()
        await ensure_streams(js, duplicate_window_s=60)
        for subject, position in EVENTS:
            body = json.dumps({"position": position, "subject": subject}).encode()
            await js.publish(subject, body, headers={subjects.HDR_POSITION: str(position)})
    finally:
        await engine.close()


def _positions_of(owner: str) -> list[int]:
    prefix = f"{subjects.EVT_INTENT_PREFIX}.{owner}."
    return [position for subject, position in EVENTS if subject.startswith(prefix)]


async def _history(bus: Bus, name: str, role: str) -> list[int]:
    reader = await user(bus, name)
    got: list[int] = []

    async def on_msg(msg: Msg) -> bool:
        got.append(json.loads(msg.data)["position"])
        return False

    try:
        await read_history(reader.nc, role=role, ident=name, start_seq=None, on_msg=on_msg)
        assert reader.errors == []
    finally:
        await reader.nc.close()
    return got


async def _request(nc: Any, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request(subject, json.dumps(body).encode(), timeout=5)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def _consumers(bus: Bus) -> dict[str, Any]:
    engine = await connect_as(bus.url)
    try:
        return {c.name: c.config for c in await engine.jetstream().consumers_info(EVT)}
    finally:
        await engine.close()


async def test_a_caller_receives_its_own_intents_events_live_and_nobody_elses(bus: Bus) -> None:
    engine = await connect_as(bus.url)
    await ensure_streams(engine.jetstream(), duplicate_window_s=60)
    acme = await user(bus, "acme")
    try:
        for theirs in ("corridor.evt.>", "corridor.evt.v2.intent.globex.>",
                       "corridor.evt.v2.intent.*.IntentSettled", "corridor.evt.v2.>",
                       "corridor.evt.v1.intent.IntentSettled"):  # fmt: skip
            await acme.nc.subscribe(theirs)
            await acme.nc.flush()
            await wait_for(lambda s=theirs: acme.refused("subscription", s), what=theirs)
        received: list[str] = []

        async def got(msg: Msg) -> None:
            received.append(msg.subject)

        await acme.nc.subscribe(subjects.owner_events("acme"), cb=got)
        await acme.nc.flush()
        for subject, _ in EVENTS:
            await engine.publish(subject, b"{}")
        probe = subjects.intent_event_subject("acme", "Probe")
        await engine.publish(probe, b"")
        await engine.flush()  # out of the client's buffer now, not at its flusher's next turn
        await wait_for(lambda: probe in received, what="the probe on acme's own subtree")
        assert received == [
            subjects.intent_event_subject("acme", "IntentReceived"),
            subjects.intent_event_subject("acme", "IntentSettled"),
            probe,
        ]
    finally:
        await acme.nc.close()
        await engine.close()


async def test_no_jetstream_api_gives_a_caller_another_callers_events(bus: Bus) -> None:
    await _publish_events(bus)
    acme = await user(bus, "acme")
    own = subjects.owner_events("acme")
    try:
        for forbidden in (
            CREATE,  # unfiltered: the body names the consumer and any filter
            f"{CREATE}.caller-acme",  # its own name, no filter in the subject
            f"{CREATE}.caller-acme.{subjects.owner_events('globex')}",
            f"{CREATE}.caller-acme.corridor.evt.v2.intent.*.>",
            f"{CREATE}.caller-acme.corridor.evt.>",
            f"{CREATE}.caller-globex.{own}",  # its filter, another's consumer name
            f"$JS.API.CONSUMER.DURABLE.CREATE.{EVT}.caller-acme",
            f"$JS.API.DIRECT.GET.{EVT}",
            f"$JS.API.DIRECT.GET.{EVT}.{subjects.intent_event_subject('globex', 'IntentSettled')}",
            f"$JS.API.STREAM.MSG.GET.{EVT}",
            f"$JS.API.STREAM.INFO.{EVT}",
            f"$JS.API.CONSUMER.MSG.NEXT.{EVT}.caller-globex",
        ):
            await acme.publish_refused(forbidden, b'{"seq": 2, "stream_name": "CORRIDOR_EVT"}')
        # Its own create subject with another filter in the body: nats-server compares them.
        name = consumer_name("caller", "acme")
        subject = f"{CREATE}.{name}.{own}"
        for config, err_code in (
            ({"filter_subject": subjects.owner_events("globex")}, 10131),
            ({"filter_subject": subjects.EVT_WILDCARD}, 10131),
            ({}, 10131),
            ({"filter_subjects": [subjects.owner_events("globex")]}, 10137),
            ({"filter_subjects": [own, subjects.owner_events("globex")]}, 10137),
        ):
            body = {"stream_name": EVT, "config": {"name": name, "ack_policy": "none", **config}}
            answer = await _request(acme.nc, subject, body)
            assert answer.get("error", {}).get("err_code") == err_code, (config, answer)
        assert await _consumers(bus) == {}
    finally:
        await acme.nc.close()
    # Through the consumer its permissions do allow: its own intents' events, nothing else.
    assert await _history(bus, "acme", "caller") == _positions_of("acme")
    assert await _history(bus, "bot", "agent") == _positions_of("bot")
    assert await _consumers(bus) == {}  # each reader deleted its own


async def test_a_reader_reads_everything_and_cannot_touch_a_consumer_it_does_not_own(
    bus: Bus,
) -> None:
    await _publish_events(bus)
    acme = await user(bus, "acme")
    name = consumer_name("caller", "acme")
    own = subjects.owner_events("acme")
    await acme.nc.jetstream().add_consumer(
        EVT, ConsumerConfig(name=name, durable_name=name, filter_subject=own,
                            ack_policy=AckPolicy.NONE),
    )  # fmt: skip
    before = (await _consumers(bus))[name]
    assert before.filter_subject == own
    hijack = {"stream_name": EVT, "config": {
        "name": name, "durable_name": name, "filter_subject": subjects.owner_events("globex"),
        "ack_policy": "none"}}  # fmt: skip
    try:
        for reader in ("op-1", "aud-1"):
            them = await user(bus, reader)
            try:
                for subject in (
                    CREATE,  # the plain form, its body naming acme's consumer
                    f"{CREATE}.{name}",
                    f"{CREATE}.{name}.{subjects.owner_events('globex')}",
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{EVT}.{name}",
                    f"$JS.API.CONSUMER.DELETE.{EVT}.{name}",
                    f"$JS.API.CONSUMER.MSG.NEXT.{EVT}.{name}",
                ):
                    await them.publish_refused(subject, json.dumps(hijack).encode())
            finally:
                await them.nc.close()
        after = await _consumers(bus)
        assert after[name].filter_subject == own, "acme's consumer was changed"
        assert after[name].deliver_subject == before.deliver_subject
    finally:
        await acme.nc.close()
    # The readers still read the whole stream, versions 1 and 2, through their own consumer.
    everything = [position for _, position in EVENTS]
    assert await _history(bus, "op-1", "operator") == everything
    assert await _history(bus, "aud-1", "auditor") == everything
    assert set(await _consumers(bus)) == {name}


async def test_an_existing_stream_keeps_its_version_1_events_and_takes_version_2(
    bus: Bus,
) -> None:
    engine = await connect_as(bus.url)
    try:
        js = engine.jetstream()
        # CORRIDOR_EVT as a release before ADR 0067 made it, with one of its events.
        await js.add_stream(StreamConfig(name=EVT, subjects=[f"{subjects.EVT_V1_PREFIX}.>"]))
        await js.publish(f"{subjects.EVT_V1_PREFIX}.intent.IntentSettled", b"old")
        await ensure_streams(js, duplicate_window_s=60)
        info = await js.stream_info(EVT)
        assert info.config.subjects == [subjects.EVT_WILDCARD]
        ack = await js.publish(subjects.intent_event_subject("acme", "IntentSettled"), b"new")
        assert ack.seq == 2
        assert (await js.get_msg(EVT, seq=1)).data == b"old"
    finally:
        await engine.close()


async def test_the_engine_cannot_remove_or_loosen_the_checkpoints(bus: Bus) -> None:
    stream = subjects.CHECKPOINT_STREAM
    engine = await user(bus, "engine-2")
    try:
        js = engine.nc.jetstream()
        await ensure_streams(js, duplicate_window_s=60)
        await ensure_streams(js, duplicate_window_s=60)  # at every start: idempotent
        # A start with another setting may not change it either; it keeps what is there.
        await ensure_streams(js, duplicate_window_s=120)
        await js.publish(subjects.CHECKPOINT_SUBJECT, b'{"checkpoint_id": "ckpt-1"}')
        # An update may not cancel deny_delete (the server says so), but it may set limits
        # that drop checkpoints (max_msgs, max_age): refused before it reaches the stream.
        loosened = {
            "name": stream, "subjects": [subjects.CHECKPOINT_WILDCARD], "deny_delete": False,
            "deny_purge": False, "max_msgs": 0, "max_age": 1,
        }  # fmt: skip
        for subject, body in (
            (f"$JS.API.STREAM.DELETE.{stream}", {}),
            (f"$JS.API.STREAM.PURGE.{stream}", {}),
            (f"$JS.API.STREAM.UPDATE.{stream}", loosened),
            (f"$JS.API.STREAM.UPDATE.{stream}", {**loosened, "deny_delete": True,
                                                 "deny_purge": True, "max_msgs": 1}),
            (f"$JS.API.STREAM.MSG.DELETE.{stream}", {"seq": 1, "no_erase": True}),
            (f"$JS.API.STREAM.RESTORE.{stream}", {"config": loosened}),
        ):  # fmt: skip
            await engine.publish_refused(subject, json.dumps(body).encode())
        info = await js.stream_info(stream)
        assert info.state.messages == 1
        assert info.config.deny_delete and info.config.deny_purge
        assert info.config.max_msgs == -1 and info.config.max_age in (0, None)
        assert info.config.duplicate_window == 60  # the first start's, kept
        # Everything else stays the engine's: its other streams it may still update.
        dlq = StreamConfig(name=subjects.DLQ_STREAM, subjects=[subjects.DLQ_WILDCARD], max_msgs=10)
        await js.update_stream(dlq)
    finally:
        await engine.nc.close()
