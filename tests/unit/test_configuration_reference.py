"""docs/configuration.md and corridor.example.toml are generated from the settings model and
cannot drift from it: stale files fail here, and the example loads back to the defaults."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from services import settings_reference
from services.settings import Settings
from services.settings_reference import EXAMPLE_PATH, MARKDOWN_PATH, REPO_ROOT, describe

# Units that belong in a setting's name (``pay_timeout_s``), never only in its extras.
NAME_UNITS = {unit for _, unit in settings_reference.SUFFIX_UNITS}
# A line of the example that sets a value once its leading "#" is removed.
_COMMENTED_SETTING = re.compile(r"^#(?=[A-Za-z0-9_\"\[-])", re.MULTILINE)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CORRIDOR_*/NATS_URL/DATABASE_URL from the caller, and no ./corridor.toml."""
    for name in list(os.environ):
        if name.upper().startswith("CORRIDOR_") or name.upper() in ("NATS_URL", "DATABASE_URL"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _loaded(monkeypatch: pytest.MonkeyPatch, config: Path) -> dict[str, Any]:
    monkeypatch.setenv("CORRIDOR_CONFIG", str(config))
    return _dump(Settings())


def _dump(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump()
    data["database_url"] = settings.database_url.get_secret_value()
    return data


def _defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    return _loaded(monkeypatch, tmp_path / "no-such-file.toml")


def test_committed_files_are_current() -> None:
    stale = settings_reference.stale()
    assert not stale, f"stale: {stale}; run `.venv/bin/{settings_reference.GENERATOR}`"


def test_every_setting_is_documented() -> None:
    documented = describe()
    assert [s.key for s in documented] == list(Settings.model_fields)
    markdown = (REPO_ROOT / MARKDOWN_PATH).read_text()
    example = (REPO_ROOT / EXAMPLE_PATH).read_text()
    for setting in documented:
        assert setting.description.endswith("."), setting.key
        assert f"| `{setting.key}` |" in markdown
        if setting.default is None and not setting.secret:
            assert f"e.g. {setting.key} = " in example, setting.key
        else:
            assert re.search(rf"^#\[?{setting.key}\b", example, re.MULTILINE), setting.key


def test_units_are_in_names_or_declared() -> None:
    for setting in describe():
        info = Settings.model_fields[setting.key]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("unit") in NAME_UNITS:
            pytest.fail(f"{setting.key}: unit {extra['unit']!r} belongs in the name's suffix")
        if info.annotation in (int, float):
            assert setting.unit, f"{setting.key} needs a unit suffix or a declared unit"


def test_secrets_are_marked_and_show_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = [s for s in describe() if s.secret]
    assert [s.key for s in secrets] == ["database_url"]
    markdown = (REPO_ROOT / MARKDOWN_PATH).read_text()
    example = (REPO_ROOT / EXAMPLE_PATH).read_text()
    for setting in secrets:
        assert setting.default is None
        row = next(line for line in markdown.splitlines() if line.startswith(f"| `{setting.key}`"))
        assert "unset (secret)" in row and "**Secret.**" in row
        assert re.search(rf'^#{setting.key} = ""$', example, re.MULTILINE)
    # Even a secret default would not leak: the model is what the generator reads.
    monkeypatch.setattr(
        Settings.model_fields["database_url"], "default", "postgresql://u:hunter2@db/x"
    )
    assert "hunter2" not in "".join(settings_reference.outputs().values())


def test_example_loads_to_the_defaults(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = _defaults(monkeypatch, clean_env)
    assert _loaded(monkeypatch, REPO_ROOT / EXAMPLE_PATH) == defaults


def test_uncommented_example_is_the_defaults(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every commented value, once uncommented, is valid TOML and equal to the default."""
    text = _COMMENTED_SETTING.sub("", (REPO_ROOT / EXAMPLE_PATH).read_text())
    parsed = tomllib.loads(text)
    with_default = {s.key for s in describe() if s.default is not None or s.secret}
    assert set(parsed) == with_default
    uncommented = clean_env / "uncommented.toml"
    uncommented.write_text(text)
    assert _loaded(monkeypatch, uncommented) == _defaults(monkeypatch, clean_env)


def test_documented_toml_keys_and_env_names_work(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "corridor.toml"
    config.write_text(
        'nats_url = "nats://nats.example:4222"\n'
        'database_url = "postgresql://u:pw@db.example/corridor"\n'
        "pay_timeout_s = 90\n"
    )
    loaded = _loaded(monkeypatch, config)
    assert loaded["nats_url"] == "nats://nats.example:4222"
    assert loaded["database_url"] == "postgresql://u:pw@db.example/corridor"
    assert loaded["pay_timeout_s"] == 90
    documented = {s.key: s for s in describe()}
    for env in documented["nats_url"].env:
        monkeypatch.setenv(env, "nats://from-env:4222")
        assert _loaded(monkeypatch, config)["nats_url"] == "nats://from-env:4222"
        monkeypatch.delenv(env)
    (env,) = documented["keysend_unsupported_nodes"].env
    monkeypatch.setenv(env, '["us-cln"]')  # lists and tables are JSON in the environment
    assert _loaded(monkeypatch, config)["keysend_unsupported_nodes"] == ["us-cln"]


def test_generator_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert settings_reference.main(["--check", "--root", str(tmp_path)]) == 1
    assert "is stale" in capsys.readouterr().err
    assert settings_reference.main(["--root", str(tmp_path)]) == 0
    assert settings_reference.main(["--check", "--root", str(tmp_path)]) == 0
    for relative, text in settings_reference.outputs().items():
        assert (tmp_path / relative).read_text() == text
