"""Each stream's limits from the settings (ADR 0079), by stream name."""

from __future__ import annotations

from typing import Final

from nats.js.api import DiscardPolicy

from services.bus import subjects
from services.bus.stream_limits import StreamLimits
from services.settings import Settings

_NEW: Final = DiscardPolicy.NEW.value
_OLD: Final = DiscardPolicy.OLD.value


def stream_limits(settings: Settings) -> dict[str, StreamLimits]:
    """Streams whose messages are not yet handled (commands, work orders, dead letters,
    checkpoints) refuse new messages when full, so nothing accepted is dropped; the event
    stream, a copy of the log, drops its oldest."""
    return {
        subjects.CMD_STREAM: StreamLimits(
            max_msgs=settings.cmd_stream_max_msgs,
            max_bytes=settings.cmd_stream_max_bytes,
            discard=_NEW,
        ),
        subjects.EVT_STREAM: StreamLimits(
            max_age_s=settings.evt_stream_max_age_s,
            max_bytes=settings.evt_stream_max_bytes,
            discard=_OLD,
        ),
        subjects.DISPATCH_STREAM: StreamLimits(
            max_age_s=settings.dispatch_stream_max_age_s,
            max_bytes=settings.dispatch_stream_max_bytes,
            discard=_NEW,
        ),
        subjects.DLQ_STREAM: StreamLimits(
            max_age_s=settings.dlq_stream_max_age_s,
            max_msgs=settings.dlq_stream_max_msgs,
            discard=_NEW,
        ),
        subjects.CHECKPOINT_STREAM: StreamLimits(
            max_bytes=settings.checkpoint_stream_max_bytes, discard=_NEW
        ),
    }


# The defaults, without reading the environment or a TOML file.
DEFAULT_STREAM_LIMITS: Final = stream_limits(Settings.model_construct())
