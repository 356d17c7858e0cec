"""`corridor release keygen|sign|verify` (ADR 0185): a signed release verifies; each way of
breaking one fails with its own code, names what broke, and exits 3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from services.cli import exit_codes
from services.cli.main import main
from services.release.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest

COMMIT = "ab" * 20
WHEEL = "corridor-0.1.0-py3-none-any.whl"
CONTEXT = "corridor-0.1.0-image-context.tar.gz"


def _corridor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip().startswith("{") else {}), err


@pytest.fixture
def release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A signed release directory and the keyring that trusts its key."""
    key = tmp_path / "keys" / "release.key"
    code, made, _ = _corridor(capsys, "release", "keygen", "--out", str(key), "--json")
    assert code == 0 and made["key_id"]
    assert os.stat(key).st_mode & 0o777 == 0o600
    directory = tmp_path / "dist"
    directory.mkdir()
    (directory / WHEEL).write_bytes(b"PK\x03\x04 a wheel")
    (directory / CONTEXT).write_bytes(b"\x1f\x8b an image context")
    code, _, err = _corridor(
        capsys, "release", "sign", "--key", str(key), "--dir", str(directory),
        "--version", "0.1.0", "--git-commit", COMMIT, "--created-at", "2026-11-30T12:00:00Z",
    )  # fmt: skip
    assert code == 0, err
    return directory, Path(made["keyring"])


def _verify(capsys: pytest.CaptureFixture[str], directory: Path, keyring: Path) -> tuple[int, dict]:
    code, out, _ = _corridor(
        capsys, "release", "verify", "--dir", str(directory), "--keyring", str(keyring), "--json"
    )
    return code, out


def _codes(out: dict) -> list[tuple[str, str, str | None]]:
    return [(p["code"], p["part"], p["artefact"]) for p in out["problems"]]


def test_a_signed_release_verifies_and_lists_every_artefact(release, capsys) -> None:
    directory, keyring = release
    code, out = _verify(capsys, directory, keyring)
    assert code == exit_codes.OK and out["ok"]
    manifest = msgspec.json.decode((directory / MANIFEST_FILE).read_bytes(), type=Manifest)
    assert [a.name for a in manifest.artefacts] == [CONTEXT, WHEEL]
    assert (manifest.version, manifest.git_commit) == ("0.1.0", COMMIT)
    assert out["manifest"]["artefacts"][1]["size"] == len(b"PK\x03\x04 a wheel")


def test_signing_is_reproducible(release, capsys, tmp_path: Path) -> None:
    directory, _ = release
    first = (directory / MANIFEST_FILE).read_bytes(), (directory / SIGNATURE_FILE).read_bytes()
    key = tmp_path / "keys" / "release.key"
    assert main(["release", "sign", "--key", str(key), "--dir", str(directory), "--version",
                 "0.1.0", "--git-commit", COMMIT, "--created-at", "2026-11-30T13:00:00+01:00"]
                ) == 0  # fmt: skip
    again = (directory / MANIFEST_FILE).read_bytes(), (directory / SIGNATURE_FILE).read_bytes()
    assert again == first  # same files, same time, same key: same bytes (Ed25519 is deterministic)


def test_a_tampered_manifest_fails_on_the_signature(release, capsys) -> None:
    directory, keyring = release
    manifest = directory / MANIFEST_FILE
    manifest.write_bytes(manifest.read_bytes().replace(b'"0.1.0"', b'"0.1.1"'))
    code, out = _verify(capsys, directory, keyring)
    assert code == exit_codes.VERIFICATION_FAILED
    assert _codes(out) == [("bad_signature", "signature", None)]


def test_a_tampered_artefact_fails_naming_it(release, capsys) -> None:
    directory, keyring = release
    (directory / WHEEL).write_bytes(b"PK\x03\x04 a wheel with a backdoor")
    code, out = _verify(capsys, directory, keyring)
    assert code == exit_codes.VERIFICATION_FAILED
    assert _codes(out) == [("digest_mismatch", "artefact", WHEEL)]


def test_a_missing_artefact_fails_naming_it(release, capsys) -> None:
    directory, keyring = release
    (directory / CONTEXT).unlink()
    code, out = _verify(capsys, directory, keyring)
    assert code == exit_codes.VERIFICATION_FAILED
    assert _codes(out) == [("artefact_missing", "artefact", CONTEXT)]


def test_a_release_signed_by_another_key_fails(release, capsys, tmp_path: Path) -> None:
    directory, _ = release
    other = tmp_path / "other.key"
    assert main(["release", "keygen", "--out", str(other)]) == 0
    capsys.readouterr()
    code, out = _verify(capsys, directory, Path(f"{other}.pub.json"))
    assert code == exit_codes.VERIFICATION_FAILED
    assert _codes(out) == [("unknown_key", "signature", None)]


def test_a_signature_relabelled_to_a_trusted_key_fails(release, capsys, tmp_path: Path) -> None:
    """Signed by a stranger, but claiming the trusted key's id: the signature does not verify."""
    directory, keyring = release
    trusted_id = json.loads(keyring.read_text())["keys"][0]["key_id"]
    stranger = tmp_path / "stranger.key"
    assert main(["release", "keygen", "--out", str(stranger)]) == 0
    assert main(["release", "sign", "--key", str(stranger), "--dir", str(directory),
                 "--version", "0.1.0", "--git-commit", COMMIT]) == 0  # fmt: skip
    capsys.readouterr()
    envelope = json.loads((directory / SIGNATURE_FILE).read_text())
    (directory / SIGNATURE_FILE).write_text(json.dumps({**envelope, "key_id": trusted_id}))
    code, out = _verify(capsys, directory, keyring)
    assert code == exit_codes.VERIFICATION_FAILED
    assert _codes(out) == [("bad_signature", "signature", None)]


def test_a_retired_key_does_not_vouch_for_a_later_release(release, capsys) -> None:
    directory, keyring = release
    document = json.loads(keyring.read_text())
    document["keys"][0]["valid_until"] = "2026-11-30T11:00:00Z"  # retired before the release
    keyring.write_text(json.dumps(document))
    code, out = _verify(capsys, directory, keyring)
    assert code == exit_codes.VERIFICATION_FAILED
    assert _codes(out) == [("key_not_valid", "signature", None)]


def test_no_signature_fails_and_a_bad_keyring_is_a_usage_error(release, capsys) -> None:
    directory, keyring = release
    (directory / SIGNATURE_FILE).unlink()
    code, out = _verify(capsys, directory, keyring)
    assert code == exit_codes.VERIFICATION_FAILED
    assert _codes(out) == [("signature_missing", "signature", None)]
    keyring.write_text('{"keys": []}')
    code, _, err = _corridor(capsys, "release", "verify", "--dir", str(directory),
                             "--keyring", str(keyring))  # fmt: skip
    assert code == exit_codes.USAGE and "lists no public key" in err


def test_text_output_names_the_artefact_on_stderr(release, capsys) -> None:
    directory, keyring = release
    (directory / WHEEL).write_bytes(b"changed")
    code, _, err = _corridor(capsys, "release", "verify", "--dir", str(directory),
                             "--keyring", str(keyring))  # fmt: skip
    assert code == exit_codes.VERIFICATION_FAILED
    assert err.startswith(f"corridor: release verify: digest_mismatch: {WHEEL}:")


def test_keygen_never_overwrites_and_sign_refuses_an_unsafe_file_name(
    release, capsys, tmp_path: Path
) -> None:
    directory, _ = release
    key = tmp_path / "keys" / "release.key"
    code, _, err = _corridor(capsys, "release", "keygen", "--out", str(key))
    assert code == exit_codes.USAGE and "never overwrites" in err
    (directory / ".hidden").write_bytes(b"x")
    code, _, err = _corridor(
        capsys, "release", "sign", "--key", str(key), "--dir", str(directory),
        "--version", "0.1.0", "--git-commit", COMMIT,
    )  # fmt: skip
    assert code == exit_codes.USAGE and "not a plain artefact name" in err
