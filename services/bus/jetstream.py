"""Connecting to NATS and declaring Corridor's JetStream streams."""

from __future__ import annotations

from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from services.bus import subjects

log = structlog.get_logger("corridor.bus")


async def _quiet_error(exc: Exception) -> None:
    # nats-py's default error callback prints a traceback on every reconnect attempt.
    log.warning("nats_error", error=type(exc).__name__, detail=str(exc)[:200])


async def connect(url: str, *, name: str) -> Client:
    servers = [u.strip() for u in url.split(",") if u.strip()]
    return await nats.connect(
        servers=servers,
        name=name,
        error_cb=_quiet_error,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
    )


def stream_configs(duplicate_window_s: int) -> list[StreamConfig]:
    common: dict[str, Any] = {
        "storage": StorageType.FILE,
        "duplicate_window": float(duplicate_window_s),
        "retention": RetentionPolicy.LIMITS,
    }
    return [
        StreamConfig(name=subjects.CMD_STREAM, subjects=[subjects.CMD_WILDCARD], **common),
        # The relay publishes events and work orders in atomic batches (ADR 0013).
        StreamConfig(
            name=subjects.EVT_STREAM, subjects=[subjects.EVT_WILDCARD], allow_atomic=True, **common
        ),
        StreamConfig(name=subjects.DLQ_STREAM, subjects=[subjects.DLQ_WILDCARD], **common),
        StreamConfig(
            name=subjects.DISPATCH_STREAM,
            subjects=[subjects.DISPATCH_WILDCARD],
            allow_atomic=True,
            **common,
        ),
    ]


async def ensure_streams(js: JetStreamContext, *, duplicate_window_s: int) -> None:
    for config in stream_configs(duplicate_window_s):
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
