"""Bounded retention (ADR 0079), over the real nats-server (issue 13, finding 7).

Every stream gets the configured limits; start-up keeps a limit an operator changed on the
server instead of resetting it; an acknowledged command leaves CORRIDOR_CMD.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import structlog
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StreamConfig

from services.bootstrap import Engine
from services.bus import subjects
from services.bus.jetstream import ensure_streams
from services.bus.stream_limits import on_server
from services.bus.stream_retention import stream_limits
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit
from tests.nats_creds import connect_as

STREAMS = (
    subjects.CMD_STREAM,
    subjects.EVT_STREAM,
    subjects.DISPATCH_STREAM,
    subjects.DLQ_STREAM,
    subjects.CHECKPOINT_STREAM,
)


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[Client]:
    nc = await connect_as(nats_url)
    yield nc
    await nc.drain()


async def test_every_stream_has_its_configured_limits(engine: Engine, nc: Client) -> None:
    js = nc.jetstream()
    wanted = stream_limits(engine.settings)
    for name in STREAMS:
        config = (await js.stream_info(name)).config
        assert on_server(config) == wanted[name].as_record(), name
        # Unlimited nowhere: each stream is bounded by age, size or count.
        assert config.max_age or config.max_bytes != -1 or config.max_msgs != -1, name
    cmd = (await js.stream_info(subjects.CMD_STREAM)).config
    assert cmd.retention == RetentionPolicy.WORK_QUEUE
    assert cmd.discard == DiscardPolicy.NEW  # a full queue refuses, never drops a command


async def test_an_acknowledged_command_leaves_the_command_stream(
    engine: Engine, nc: Client
) -> None:
    js = nc.jetstream()
    for i in range(20):
        body = json.dumps(submit(key=f"r{i}")).encode()
        await js.publish("corridor.cmd.v1.intents.submit.alice", body)

    async def handled() -> bool:
        async with engine.store.pool.acquire() as conn:
            intents = await conn.fetchval("SELECT count(DISTINCT stream_id) FROM events")
        return bool(intents == 20)

    await wait_for(handled, what="20 intents from the command stream")

    async def emptied() -> bool:
        return (await js.stream_info(subjects.CMD_STREAM)).state.messages == 0

    await wait_for(emptied, what="CORRIDOR_CMD to drop the 20 acknowledged commands")


async def test_start_up_keeps_a_limit_an_operator_changed_and_follows_settings_elsewhere(
    client: Client,
) -> None:
    js = client.jetstream()
    await ensure_streams(js, duplicate_window_s=120, limits=stream_limits(Settings()))
    evt = (await js.stream_info(subjects.EVT_STREAM)).config
    three_days = 3 * 86_400
    evt.max_age = float(three_days)  # the operator's change, as `nats stream edit` makes it
    await js.update_stream(evt)

    changed = Settings(evt_stream_max_age_s=14 * 86_400, dlq_stream_max_msgs=500)
    with structlog.testing.capture_logs() as logs:
        await ensure_streams(js, duplicate_window_s=120, limits=stream_limits(changed))
    evt = (await js.stream_info(subjects.EVT_STREAM)).config
    assert int(evt.max_age or 0) == three_days, "the operator's limit was overwritten"
    kept = [e for e in logs if e["event"] == "stream_limit_kept"]
    assert kept == [
        {"event": "stream_limit_kept", "log_level": "warning", "stream": subjects.EVT_STREAM,
         "limit": "max_age_s", "operator_value": three_days,
         "configured_value": 14 * 86_400, "detail": kept[0]["detail"]}
    ]  # fmt: skip
    # A limit nobody changed on the server follows the settings.
    assert (await js.stream_info(subjects.DLQ_STREAM)).config.max_msgs == 500
    # And the operator's value is still kept at the next start.
    with structlog.testing.capture_logs() as logs:
        await ensure_streams(js, duplicate_window_s=120, limits=stream_limits(changed))
    assert int((await js.stream_info(subjects.EVT_STREAM)).config.max_age or 0) == three_days
    assert [e["limit"] for e in logs if e["event"] == "stream_limit_kept"] == ["max_age_s"]


async def test_a_stream_from_before_limits_gets_them_and_keeps_its_retention(
    client: Client,
) -> None:
    js = client.jetstream()
    # As earlier versions made it: limits retention, no limit, no record of Corridor's limits.
    await js.add_stream(
        StreamConfig(
            name=subjects.CMD_STREAM, subjects=[subjects.CMD_WILDCARD],
            retention=RetentionPolicy.LIMITS, duplicate_window=120.0,
        )
    )  # fmt: skip
    await js.publish("corridor.cmd.v1.intents.submit.alice", b"{}")
    with structlog.testing.capture_logs() as logs:
        await ensure_streams(js, duplicate_window_s=120)
    info = await js.stream_info(subjects.CMD_STREAM)
    assert info.config.max_msgs == Settings().cmd_stream_max_msgs
    # The server cannot turn it into a work queue: kept as it is, with a clear error.
    assert info.config.retention == RetentionPolicy.LIMITS
    assert info.state.messages == 1
    assert [e["stream"] for e in logs if e["event"] == "stream_retention_kept"] == [
        subjects.CMD_STREAM
    ]
