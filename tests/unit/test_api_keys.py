"""HTTP API keys (ADR 0171): a bearer token per credential; the registry holds its hash only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.identity import nats_auth
from services.identity.api_keys import http_path, read_token, token_hash
from services.identity.registry import InvalidCredential, load_registry, registry_path


def test_creds_add_writes_the_token_0600_and_registers_only_its_hash(tmp_path: Path) -> None:
    out = tmp_path / "alice.nk"
    credential = nats_auth.issue(tmp_path, role="caller", ident="alice", out=out,
                                 kind="service", api_key=True)  # fmt: skip
    token_file = http_path(out)
    assert token_file == tmp_path / "alice.nk.http"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = read_token(token_file)
    registry_text = registry_path(tmp_path).read_text()
    assert token not in registry_text
    assert credential.api_key_sha256 == token_hash(token)
    registry = load_registry(registry_path(tmp_path))
    found = registry.by_api_key_hash(token_hash(token))
    assert found is not None and (found.role, found.id) == ("caller", "alice")
    assert registry.by_api_key_hash(token_hash(token + "x")) is None


def test_revoke_ends_the_key_too(tmp_path: Path) -> None:
    seed = nats_auth.ensure(tmp_path, role="operator", ident="op-1", api_key=True)
    token = read_token(http_path(seed))
    registry = nats_auth.revoke(tmp_path, role="operator", ident="op-1")
    assert registry.by_api_key_hash(token_hash(token)) is None
    assert not http_path(seed).exists()


def test_ensure_keeps_a_key_that_is_there_and_makes_one_that_is_missing(tmp_path: Path) -> None:
    seed = nats_auth.ensure(tmp_path, role="caller", ident="local", kind="service")
    assert not http_path(seed).exists()
    nats_auth.ensure(tmp_path, role="caller", ident="local", kind="service", api_key=True)
    token = read_token(http_path(seed))
    nats_auth.ensure(tmp_path, role="caller", ident="local", kind="service", api_key=True)
    assert read_token(http_path(seed)) == token
    registry = load_registry(registry_path(tmp_path))
    assert registry.by_api_key_hash(token_hash(token)) is not None


def test_an_existing_token_file_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "bob.nk"
    http_path(out).write_text("someone's token\n")
    with pytest.raises(InvalidCredential):
        nats_auth.issue(tmp_path, role="caller", ident="bob", out=out, kind="service",
                        api_key=True)  # fmt: skip
    assert not out.exists()
