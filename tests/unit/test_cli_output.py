"""What the CLI prints for people: tables with headers, readable replies, a progress line that
only a terminal sees."""

from __future__ import annotations

import io

from services.cli import output
from services.cli.intents import readable_reply
from services.cli.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_table_has_a_header_row_and_aligned_columns() -> None:
    text = output.table(["NAME", "AMOUNT_MSAT"], [["a", 1], ["longer", None]])
    assert text.splitlines() == ["NAME    AMOUNT_MSAT", "a       1", "longer  -"]


def test_a_failed_submit_reply_reads_as_lines_and_tables() -> None:
    reply = {
        "type": "CommandAccepted", "ok": True, "intent_id": "i-1", "state": "failed",
        "duplicate": False, "reason": "no_route_candidate",
        "explanation": [{"rule": "fee.cap", "effect": "pass", "inputs": {"allowed_msat": 10}}],
        "failures": [
            {"region": "us", "node": "us-lnd", "reason": "no_route", "attempt": 1},
            {"region": "eu", "node": "eu-lnd", "reason": "unhealthy", "attempt": None},
        ],
        "version": 1,
    }  # fmt: skip
    lines = readable_reply(reply).splitlines()
    assert lines[:3] == ["intent id  i-1", "state      failed", "reason     no_route_candidate"]
    assert "explanation:" in lines and "failures:" in lines
    failures = lines[lines.index("failures:") + 1 :]
    assert failures[0].split() == ["REGION", "NODE", "REASON", "ATTEMPT"]
    assert failures[1].split() == ["us", "us-lnd", "no_route", "1"]
    assert failures[2].split() == ["eu", "eu-lnd", "unhealthy", "-"]
    explanation = lines[lines.index("explanation:") + 1 : lines.index("failures:")]
    assert explanation[1].split()[:2] == ["fee.cap", "pass"]


def test_a_plain_reply_shows_no_empty_sections() -> None:
    reply = {"type": "CommandAccepted", "ok": True, "intent_id": "i-2", "state": "dispatched",
             "duplicate": True, "reason": None, "explanation": [], "failures": []}  # fmt: skip
    text = readable_reply(reply)
    assert "explanation" not in text and "failures" not in text and "reason" not in text
    assert "duplicate" in text


def test_progress_is_silent_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress("replay", total=10, unit="events", stream=stream) as progress:
        progress.advance(5)
    assert stream.getvalue() == ""
    assert not progress.enabled


def test_progress_draws_carriage_return_updates_and_erases_its_line() -> None:
    stream = _Terminal()
    with Progress("replay", total=200, unit="events", stream=stream) as progress:
        progress.update(50)  # within the redraw interval: not drawn yet, but counted
        assert progress.text() == "replay: 50/200 events (25 %)"
    written = stream.getvalue()
    assert written.startswith("\rreplay: 0/200 events (0 %)")
    assert written.endswith("\r")  # erased: what the command prints next starts clean
    assert "\n" not in written


def test_progress_without_a_total_counts() -> None:
    progress = Progress("reading the log", unit="events", stream=_Terminal())
    progress.advance(1234)
    assert progress.text() == "reading the log: 1,234 events"
    progress.close()
