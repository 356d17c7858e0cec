"""A test that configures logging leaves it as it found it: the next test's logs still reach
the output pytest captures. (``tests/lightning/test_lnd_adapter.py`` checks the captured logs
for secrets; it saw nothing when it ran after ``test_log_lines.py`` in one process.)

The two tests run in file order: the first configures logging as a service does, the second is
any later test that reads its logs from ``capsys``."""

from __future__ import annotations

import io

import pytest
import structlog

from services.logging import configure_logging


def test_a_test_configures_logging_as_a_service_does() -> None:
    out = io.StringIO()
    configure_logging("error", out)
    structlog.get_logger("corridor.probe").error("probe_configured")
    assert "probe_configured" in out.getvalue()


def test_the_next_test_still_captures_its_logs(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.get_logger("corridor.probe").info("probe_after")
    assert "probe_after" in capsys.readouterr().out
