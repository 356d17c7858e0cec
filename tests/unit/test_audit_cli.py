"""``corridor audit verify``: exit 0 intact, 3 broken (naming lines), 2 for a usage mistake;
``--json`` lists ``{line, problem, message}``; times parse as ISO-8601."""

from __future__ import annotations

import io
import json
from pathlib import Path

import msgspec
import pytest

from services.audit.cli import bounded_lines, parse_time
from services.cli import exit_codes
from services.cli.errors import UsageError
from services.cli.main import main
from services.signing.file_keys import PublicKeyEntry, PublicKeys
from services.signing.port import b64url
from tests.unit.test_audit_bundle import SIGNER, _bundle, _edit, _log


@pytest.fixture
async def bundle(tmp_path: Path) -> Path:
    await _bundle(tmp_path, await _log(10))
    return tmp_path / "bundle.jsonl"


def _keyring(path: Path) -> Path:
    entry = PublicKeyEntry(
        key_id=SIGNER.key_id, algorithm="ed25519", public_key=b64url(SIGNER.public_key)
    )
    path.write_bytes(msgspec.json.encode(PublicKeys(keys=(entry,))))
    return path


def test_an_intact_bundle_exits_0(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(bundle)]) == exit_codes.OK
    assert "bundle intact: 12 event lines" in capsys.readouterr().out
    keyring = _keyring(bundle.parent / "keys.json")
    for key in (str(keyring), b64url(SIGNER.public_key)):
        assert main(["audit", "verify", str(bundle), "--public-key", key]) == exit_codes.OK
        assert "unsigned tail: 3 events" in capsys.readouterr().out


def test_a_broken_bundle_exits_3_and_lists_lines_as_json(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = bundle.read_bytes().splitlines(keepends=True)
    bundle.write_bytes(b"".join([*lines[:4], _edit(lines[4], reason="x"), *lines[6:]]))
    assert main(["audit", "verify", str(bundle), "--json"]) == exit_codes.VERIFICATION_FAILED
    captured = capsys.readouterr()
    problems = json.loads(captured.out)
    assert [(p["line"], p["problem"]) for p in problems] == [
        (5, "hash_mismatch"),
        (6, "missing_events"),
    ]
    assert all(p["message"] for p in problems)
    summary = json.loads(captured.err)
    assert summary["ok"] is False and summary["problems_total"] == 2

    assert main(["audit", "verify", str(bundle)]) == exit_codes.VERIFICATION_FAILED
    assert "line 5: hash_mismatch:" in capsys.readouterr().out


def test_usage_mistakes_exit_2(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(bundle.parent / "missing")]) == exit_codes.USAGE
    assert main(["audit", "verify", str(bundle), "--public-key", "!" * 43]) == exit_codes.USAGE
    not_keys = bundle.parent / "not-keys.json"
    not_keys.write_text("{}")
    assert main(["audit", "verify", str(bundle), "--public-key", str(not_keys)]) == 2
    err = capsys.readouterr().err
    assert "--public-key" in err and "Traceback" not in err


def test_a_huge_line_is_read_past_not_held() -> None:
    stream = io.BytesIO(b"ok\n" + b"x" * 100 + b"\nnext\n" + b"y" * 50)
    lines = list(bounded_lines(stream, 10))
    assert lines == [b"ok\n", b"x" * 12, b"next\n", b"y" * 12]


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-30T12:00:00Z", 1_796_040_000_000),
        ("2026-11-30T13:00:00+01:00", 1_796_040_000_000),
        ("2026-11-30T12:00:00", 1_796_040_000_000),  # no zone: UTC
        ("2026-11-30T12:00:00.250Z", 1_796_040_000_250),
    ],
)
def test_times_are_iso_8601(text: str, ms: int) -> None:
    assert parse_time(text, "--from") == ms


@pytest.mark.parametrize("text", ["yesterday", "1796040000", "1969-12-31T00:00:00Z", "2" * 80])
def test_a_time_that_is_not_iso_8601_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--to"):
        parse_time(text, "--to")


def test_export_refuses_a_bad_range_before_connecting(tmp_path: Path) -> None:
    out = str(tmp_path / "b.jsonl")
    assert main(["audit", "export", "--out", out, "--from-position", "0"]) == exit_codes.USAGE
    argv = ["audit", "export", "--out", out, "--from-position", "5", "--to-position", "4"]
    assert main(argv) == exit_codes.USAGE
    argv = ["audit", "export", "--out", out, "--from", "2026-01-02", "--to", "2026-01-01"]
    assert main(argv) == exit_codes.USAGE
