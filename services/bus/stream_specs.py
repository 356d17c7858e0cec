"""Corridor's streams declared through the bus port, for a bus that is not a nats-server
(the in-memory twin, ADR 0093, 0098): their names, subjects, duplicate window, retention and
atomic batches. The production declaration (``jetstream.ensure_streams``) adds the limits,
storage and deny-delete settings the port does not name."""

from __future__ import annotations

from nats.js.api import RetentionPolicy

from services.bus.jetstream import stream_configs
from services.bus.port import Bus, StreamSpec


def stream_specs(duplicate_window_s: int) -> list[StreamSpec]:
    return [
        StreamSpec(
            name=config.name or "",
            subjects=tuple(config.subjects or ()),
            duplicate_window_s=float(duplicate_window_s),
            work_queue=config.retention == RetentionPolicy.WORK_QUEUE,
            allow_atomic=bool(config.allow_atomic),
        )
        for config in stream_configs(duplicate_window_s)
    ]


async def declare_streams(bus: Bus, *, duplicate_window_s: int) -> None:
    for spec in stream_specs(duplicate_window_s):
        await bus.add_stream(spec)
