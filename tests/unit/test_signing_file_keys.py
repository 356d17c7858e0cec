"""The file adapter: where the engine's key lives, who may read it, what executors trust."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from services.signing.ed25519 import Ed25519Signer
from services.signing.file_keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEYS_FILE,
    FileKeyring,
    keys_dir,
    load_or_create_signer,
    load_signer,
    main,
    read_public_keys,
)
from services.signing.port import BadSignature, KeyFileError, UnknownKey, b64url


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _entry(signer: Ed25519Signer) -> dict[str, str]:
    return {
        "key_id": signer.key_id,
        "algorithm": "ed25519",
        "public_key": b64url(signer.public_key),
    }


def test_the_key_is_created_once_private_and_its_public_half_listed(tmp_path: Path) -> None:
    directory = keys_dir(tmp_path)
    signer = load_or_create_signer(directory)
    assert directory == tmp_path / "keys" and _mode(directory) == 0o700
    assert _mode(directory / PRIVATE_KEY_FILE) == 0o600
    assert _mode(directory / PUBLIC_KEYS_FILE) == 0o644
    listed = json.loads((directory / PUBLIC_KEYS_FILE).read_text())
    assert listed == {"keys": [_entry(signer)]}
    # The next start reads the same key and lists it once.
    again = load_or_create_signer(directory)
    assert again.key_id == signer.key_id
    assert json.loads((directory / PUBLIC_KEYS_FILE).read_text()) == listed
    assert read_public_keys(directory / PUBLIC_KEYS_FILE).key_ids() == {signer.key_id}


def test_engines_starting_at_once_share_one_key(tmp_path: Path) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        ids.append(load_or_create_signer(tmp_path).key_id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert read_public_keys(tmp_path / PUBLIC_KEYS_FILE).key_ids() == set(ids)


def test_a_key_others_can_read_is_not_used(tmp_path: Path) -> None:
    load_or_create_signer(tmp_path)
    os.chmod(tmp_path / PRIVATE_KEY_FILE, 0o640)
    with pytest.raises(KeyFileError, match="0640"):
        load_signer(tmp_path / PRIVATE_KEY_FILE)


def test_a_key_file_that_is_not_an_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / PRIVATE_KEY_FILE
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="not a PEM"):
        load_signer(path)
    other = ec.generate_private_key(ec.SECP256K1())
    path.write_bytes(other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_signer(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signer(tmp_path / "missing.key")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"keys": []}, "no public key"),
        ({"keys": [{"key_id": "00" * 8, "algorithm": "ed25519", "public_key": "AA"}]}, "32 bytes"),
        ({"keys": [{"key_id": "x", "algorithm": "rsa", "public_key": "AA"}]}, "not ed25519"),
        ({"keys": [], "private_key": "oops"}, "not a public keyring"),
        ([], "not a public keyring"),
    ],
)
def test_a_bad_keyring_is_refused(tmp_path: Path, document: object, problem: str) -> None:
    path = tmp_path / PUBLIC_KEYS_FILE
    path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError, match=problem):
        read_public_keys(path)


def test_a_keyring_entry_under_another_keys_id_is_refused(tmp_path: Path) -> None:
    one, two = Ed25519Signer.generate(), Ed25519Signer.generate()
    path = tmp_path / PUBLIC_KEYS_FILE
    path.write_text(json.dumps({"keys": [{**_entry(one), "key_id": two.key_id}]}))
    with pytest.raises(KeyFileError, match="is not its key's id"):
        read_public_keys(path)


def test_an_executor_without_the_keyring_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read the engine's public keys"):
        FileKeyring(tmp_path / PUBLIC_KEYS_FILE)


def test_a_rotated_key_is_trusted_once_listed_without_a_restart(tmp_path: Path) -> None:
    old = load_or_create_signer(tmp_path)
    keyring = FileKeyring(tmp_path / PUBLIC_KEYS_FILE, reload_s_min=0.0)
    new = Ed25519Signer.generate()
    with pytest.raises(UnknownKey):
        keyring.verify(new.key_id, b"m", new.sign(b"m"))
    (tmp_path / PUBLIC_KEYS_FILE).write_text(json.dumps({"keys": [_entry(old), _entry(new)]}))
    keyring.verify(new.key_id, b"m", new.sign(b"m"))
    keyring.verify(old.key_id, b"m", old.sign(b"m"))


def test_a_keyring_broken_while_running_keeps_the_keys_it_had(tmp_path: Path) -> None:
    signer = load_or_create_signer(tmp_path)
    keyring = FileKeyring(tmp_path / PUBLIC_KEYS_FILE, reload_s_min=0.0)
    (tmp_path / PUBLIC_KEYS_FILE).write_text("{")
    stranger = Ed25519Signer.generate()
    with pytest.raises(UnknownKey):  # makes it re-read the broken file
        keyring.verify(stranger.key_id, b"m", stranger.sign(b"m"))
    keyring.verify(signer.key_id, b"m", signer.sign(b"m"))
    with pytest.raises(BadSignature):
        keyring.verify(signer.key_id, b"m", stranger.sign(b"m"))


def test_unknown_key_ids_do_not_reread_the_file_more_often_than_allowed(tmp_path: Path) -> None:
    load_or_create_signer(tmp_path)
    keyring = FileKeyring(tmp_path / PUBLIC_KEYS_FILE, reload_s_min=3600.0)
    new = Ed25519Signer.generate()
    entries = json.loads((tmp_path / PUBLIC_KEYS_FILE).read_text())["keys"]
    (tmp_path / PUBLIC_KEYS_FILE).write_text(json.dumps({"keys": [*entries, _entry(new)]}))
    with pytest.raises(UnknownKey):  # loaded a moment ago: not read again for an hour
        keyring.verify(new.key_id, b"m", new.sign(b"m"))


def test_the_key_can_be_made_before_any_engine_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The upgrade's step 4 (ADR 0063): executors need the keyring before engines run.
    assert main([str(tmp_path)]) == 0
    signer = load_signer(tmp_path / "keys" / PRIVATE_KEY_FILE)
    printed = capsys.readouterr().out
    assert f"key_id={signer.key_id}" in printed and PUBLIC_KEYS_FILE in printed
    assert main([]) == 2
