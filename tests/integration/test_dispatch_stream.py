"""The dispatch stream an executor creates when it starts before the engine, through the bus
port (ADR 0105): over NATS it is the production stream, file storage and the default limits
with their record (ADR 0079), and an existing stream is never changed."""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, StorageType
from nats.js.errors import NotFoundError

from services.bus import subjects
from services.bus.nats_adapter import NatsBus
from services.bus.stream_limits import METADATA_KEY
from services.bus.stream_retention import DEFAULT_STREAM_LIMITS
from services.executor.consumer import ensure_dispatch_stream

WINDOW_S = 60


async def test_an_executor_creates_the_dispatch_stream_with_its_limits(nc: Client) -> None:
    js = nc.jetstream()
    with pytest.raises(NotFoundError):  # a fresh server: the engine has not started
        await js.stream_info(subjects.DISPATCH_STREAM)
    await ensure_dispatch_stream(NatsBus(nc), duplicate_window_s=WINDOW_S)
    config = (await js.stream_info(subjects.DISPATCH_STREAM)).config
    limits = DEFAULT_STREAM_LIMITS[subjects.DISPATCH_STREAM]
    assert config.subjects == [subjects.DISPATCH_WILDCARD]
    assert (config.storage, config.duplicate_window, config.allow_atomic) == (
        StorageType.FILE, WINDOW_S, True,
    )  # fmt: skip
    assert (config.max_age, config.max_bytes) == (limits.max_age_s, limits.max_bytes)
    assert config.discard == DiscardPolicy.NEW
    assert json.loads((config.metadata or {})[METADATA_KEY]) == limits.as_record()


async def test_an_existing_dispatch_stream_is_kept_as_it_is(nc: Client) -> None:
    js = nc.jetstream()
    await ensure_dispatch_stream(NatsBus(nc), duplicate_window_s=WINDOW_S)
    await ensure_dispatch_stream(NatsBus(nc), duplicate_window_s=WINDOW_S * 2)
    config = (await js.stream_info(subjects.DISPATCH_STREAM)).config
    assert config.duplicate_window == WINDOW_S
