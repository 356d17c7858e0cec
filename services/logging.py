"""structlog JSON logs. Every line carries ``intent_id``, ``correlation_id`` and ``causation_id``
(null when not bound), bound once per message with contextvars."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
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


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(secret in key.lower() for secret in _SECRET_KEYS):
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "info", stream: Any = None, *, cache: bool = False) -> None:
    """``cache``: a long-running process binds each module's logger once (a lazy logger costs
    three times as much per call, even when the level filters the call out); tests that
    reconfigure logging between cases leave it off."""
    logging.basicConfig(level=level.upper(), stream=stream or sys.stderr, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _always_present,
            _redact,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=cache,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
