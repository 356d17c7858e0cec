"""Corridor's streams declared through the bus port: their names, subjects, duplicate window,
retention, atomic batches and default limits (ADR 0079). The in-memory twin (ADR 0093, 0098)
is declared from these; so is the dispatch stream an executor creates when it starts before
the engine. The engine's own declaration over NATS (``jetstream.ensure_streams``) also
reconciles limits an operator changed and sets the checkpoint stream's deny-delete, which
the port does not name."""

from __future__ import annotations

from collections.abc import Mapping

from nats.js.api import RetentionPolicy

from services.bus.jetstream import stream_configs
from services.bus.port import Bus, StreamSpec
from services.bus.stream_limits import StreamLimits
from services.bus.stream_retention import DEFAULT_STREAM_LIMITS


def stream_specs(
    duplicate_window_s: int, limits: Mapping[str, StreamLimits] = DEFAULT_STREAM_LIMITS
) -> list[StreamSpec]:
    return [
        StreamSpec(
            name=config.name or "",
            subjects=tuple(config.subjects or ()),
            duplicate_window_s=float(duplicate_window_s),
            work_queue=config.retention == RetentionPolicy.WORK_QUEUE,
            allow_atomic=bool(config.allow_atomic),
            limits=limits.get(config.name or ""),
        )
        for config in stream_configs(duplicate_window_s)
    ]


def stream_spec(name: str, duplicate_window_s: int) -> StreamSpec:
    [spec] = [s for s in stream_specs(duplicate_window_s) if s.name == name]
    return spec


async def declare_streams(bus: Bus, *, duplicate_window_s: int) -> None:
    for spec in stream_specs(duplicate_window_s):
        await bus.add_stream(spec)
