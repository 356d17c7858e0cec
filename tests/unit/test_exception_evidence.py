"""``--evidence FILE_OR_TEXT`` of ``corridor exceptions resolve`` (ADR 0161): a file's contents
or the text itself, at most ``EVIDENCE_CHARS_MAX`` characters, refused beyond (never cut)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import limits
from services.cli.errors import UsageError
from services.cli.exception_actions import evidence_text
from services.cli.parser import build_parser


def test_a_file_is_read_and_text_is_taken_as_it_is(tmp_path: Path) -> None:
    record = tmp_path / "node-record.json"
    record.write_text('{"status":"failed"}')
    assert evidence_text(str(record)) == '{"status":"failed"}'
    assert evidence_text("lncli listpayments: no HTLC") == "lncli listpayments: no HTLC"
    assert evidence_text(None) == ""


def test_evidence_beyond_the_limit_is_refused_not_cut(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("x" * (limits.EVIDENCE_CHARS_MAX + 1))
    with pytest.raises(UsageError, match=str(limits.EVIDENCE_CHARS_MAX)):
        evidence_text(str(big))
    exact = tmp_path / "exact.txt"
    exact.write_text("y" * limits.EVIDENCE_CHARS_MAX)
    assert len(evidence_text(str(exact))) == limits.EVIDENCE_CHARS_MAX
    with pytest.raises(UsageError):
        evidence_text("nul\x00byte")


def test_bare_exceptions_still_lists() -> None:
    bare = build_parser(["exceptions"]).parse_args(["exceptions", "--json"])
    listing = build_parser(["exceptions"]).parse_args(["exceptions", "list", "--json"])
    assert bare.handler == listing.handler == "services.cli.audit:exceptions"
    assert bare.json and listing.json


@pytest.mark.parametrize(
    "argv",
    [
        ["exceptions", "resolve", "i-1", "--reason", "r"],
        ["exceptions", "reprocess", "i-1"],
        ["resolve", "i-1", "not_paid", "--evidence", "e"],
    ],
)
def test_operator_actions_connect_with_the_operators_credential(argv: list[str]) -> None:
    """Without it they used the caller's seed `corridor up` made, which may not publish there."""
    from services.cli.credentials import request_for

    request = request_for(build_parser(argv).parse_args(argv))
    assert request is not None and request.role == "operator"
