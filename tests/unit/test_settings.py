"""One typed settings object: defaults, then a TOML file, then environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.settings import load_settings


def test_defaults_are_for_local_use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("NATS_URL", "DATABASE_URL", "CORRIDOR_NETWORK", "CORRIDOR_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert settings.network == "regtest"
    assert settings.nats_url == ""
    assert set(settings.corridors) == {"us-eu", "eu-asia", "us-asia"}


def test_file_then_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "corridor.toml"
    config.write_text('network = "signet"\nintake_batch_max = 64\n')
    monkeypatch.setenv("CORRIDOR_CONFIG", str(config))
    monkeypatch.delenv("CORRIDOR_NETWORK", raising=False)
    assert load_settings().network == "signet"
    assert load_settings().intake_batch_max == 64
    monkeypatch.setenv("CORRIDOR_NETWORK", "testnet")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db/x")
    settings = load_settings()
    assert settings.network == "testnet"
    assert "hunter2" not in repr(settings)  # secrets stay out of logs and errors


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRIDOR_NETWORK", "moonnet")
    with pytest.raises(ValidationError):
        load_settings()
