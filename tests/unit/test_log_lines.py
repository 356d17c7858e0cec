"""Every log line is one JSON object on the configured stream, naming its component and the
correlation fields, with secrets redacted."""

from __future__ import annotations

import io
import json

import structlog

from services.logging import configure_logging


def test_a_line_names_its_component_and_the_correlation_fields() -> None:
    out = io.StringIO()
    configure_logging("info", out)
    structlog.get_logger("corridor.relay").info("relay_started", position=7, secret="s3cr3t")
    structlog.contextvars.bind_contextvars(causation_id="evt-1")
    try:
        structlog.get_logger("corridor.executor").warning("payment_failed")
    finally:
        structlog.contextvars.unbind_contextvars("causation_id")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["component"] == "corridor.relay" and first["position"] == 7
    assert first["secret"] == "[redacted]" and "s3cr3t" not in out.getvalue()
    assert {"intent_id", "correlation_id", "causation_id"} <= set(first)
    assert (second["component"], second["causation_id"], second["level"]) == (
        "corridor.executor", "evt-1", "warning",
    )  # fmt: skip
