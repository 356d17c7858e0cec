"""structlog JSON logs on stderr. Every line carries ``component`` (the logger's name, e.g.
``corridor.relay``), and ``intent_id``, ``correlation_id`` and ``causation_id`` (null when not
bound), bound once per message with contextvars."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

_ALWAYS = ("intent_id", "correlation_id", "causation_id")
_SECRET_KEYS = ("macaroon", "rune", "password", "database_url", "secret")


def _always_present(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in _ALWAYS:
        event_dict.setdefault(key, None)
    return event_dict


class _NamedPrintLogger(structlog.PrintLogger):
    """A print logger that remembers the name it was asked for, for ``_component``."""

    def __init__(self, file: Any, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: Any) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args else None)


def _component(
    logger: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.setdefault("component", getattr(logger, "name", None))
    return event_dict


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(secret in key.lower() for secret in _SECRET_KEYS):
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(
    level: str = "info", stream: Any = None, *, cache: bool = False, path: Path | None = None
) -> None:
    """``cache``: a long-running process binds each module's logger once (a lazy logger costs
    three times as much per call, even when the level filters the call out); tests that
    reconfigure logging between cases leave it off.

    ``path``: append the JSON lines to this file instead of ``stream``, for commands whose
    screen belongs to a report (``corridor demo``). Standard-library loggers (nats, asyncio)
    and Python warnings then go to the file too, so no log line reaches the terminal. The
    file stays open, line-buffered, for the life of the process.
    """
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("a", encoding="utf-8", buffering=1)
    target = stream or sys.stderr
    # ``force`` replaces handlers an earlier import may have installed on the root logger, which
    # would otherwise keep writing to the terminal.
    logging.basicConfig(
        level=level.upper(), stream=target, format="%(message)s", force=path is not None
    )
    if path is not None:
        logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _component,
            _always_present,
            _redact,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_NamedPrintLoggerFactory(target),
        cache_logger_on_first_use=cache,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
