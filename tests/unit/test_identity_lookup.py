"""The engine's registry lookup follows the file: added and revoked credentials apply without a
restart, a broken file leaves the last good registry in force, a missing one refuses everyone."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.identity.lookup import IndexedRegistry, RegistryFile, lookup_from_settings
from services.identity.registry import Credential, Registry, save_registry

KEY = "U" + "B" * 55
ALICE = Credential(id="alice", role="caller", public_key=KEY, kind="service")
OP = Credential(id="op-a", role="operator", public_key=KEY)


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_change_to_the_file_applies_at_the_next_check(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    save_registry(path, Registry(credentials=(ALICE,)))
    ticks = Ticks()
    lookup = RegistryFile(path, check_interval_s=1.0, monotonic=ticks)
    assert lookup.find("caller", "alice") == ALICE
    assert lookup.find("operator", "alice") is None

    save_registry(
        path, Registry(credentials=(ALICE,)).with_added(OP).with_revoked("caller", "alice")
    )
    ticks.now += 0.5  # within the interval the file is not looked at
    assert lookup.find("caller", "alice") == ALICE
    ticks.now += 0.5
    assert lookup.find("caller", "alice") is None
    assert lookup.find("operator", "op-a") == OP
    assert lookup.reloads == 2
    ticks.now += 5  # an unchanged file is not read again
    assert lookup.find("operator", "op-a") == OP
    assert lookup.reloads == 2


def test_a_broken_file_keeps_the_last_good_registry(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    save_registry(path, Registry(credentials=(ALICE,)))
    ticks = Ticks()
    lookup = RegistryFile(path, check_interval_s=1.0, monotonic=ticks)
    path.write_text('{"credentials": [{"id": "a.b"')
    ticks.now += 1
    assert lookup.find("caller", "alice") == ALICE
    bad_id = '{"credentials":[{"id":"a.b","role":"caller","public_key":"%s","kind":"human"}]}'
    path.write_text(bad_id % KEY)
    ticks.now += 1
    assert lookup.find("caller", "alice") == ALICE
    save_registry(path, Registry(credentials=(OP,)))
    ticks.now += 1
    assert lookup.find("caller", "alice") is None and lookup.find("operator", "op-a") == OP


def test_a_missing_file_is_an_empty_registry_that_refuses_everyone(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    ticks = Ticks()
    lookup = RegistryFile(path, check_interval_s=0, monotonic=ticks)
    assert lookup.find("caller", "alice") is None
    save_registry(path, Registry(credentials=(ALICE,)))
    assert lookup.find("caller", "alice") == ALICE
    path.unlink()
    assert lookup.find("caller", "alice") is None


def test_the_settings_name_the_file_or_nothing_is_verified(tmp_path: Path) -> None:
    class Old:
        pass

    class New:
        credentials_file = tmp_path / "credentials.json"

    assert lookup_from_settings(Old()) is None
    found = lookup_from_settings(New())
    assert isinstance(found, RegistryFile) and found.path == New.credentials_file


def test_an_indexed_registry_answers_live_credentials_only() -> None:
    registry = IndexedRegistry(Registry(credentials=(ALICE, OP)).with_revoked("operator", "op-a"))
    assert registry.find("caller", "alice") == ALICE
    assert registry.find("operator", "op-a") is None


def test_a_credential_added_a_moment_ago_is_found_on_a_miss(tmp_path: Path) -> None:
    # `corridor creds add` returns once nats-server admits the key; the engine must not refuse
    # that credential for the rest of its check interval.
    path = tmp_path / "credentials.json"
    save_registry(path, Registry(credentials=(ALICE,)))
    ticks = Ticks()
    lookup = RegistryFile(path, check_interval_s=1.0, monotonic=ticks)
    save_registry(path, Registry(credentials=(ALICE,)).with_added(OP))
    ticks.now += 0.1  # well inside the interval
    assert lookup.find("operator", "op-a") == OP
    # Hits do not look at the file again inside the interval; misses at most every 50 ms.
    reloads = lookup.reloads
    save_registry(path, Registry(credentials=(ALICE, OP)).with_revoked("operator", "op-a"))
    assert lookup.find("caller", "nobody") is None  # 0 ms since the last look: not re-read
    assert lookup.reloads == reloads


def test_the_settings_name_the_registry_an_engine_on_outside_servers_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found from outside: `corridor up --no-sim` on given servers (NATS_URL, the compose and
    # k8s deployments) read a `credentials_file` setting that did not exist, so the engine ran
    # with no registry at all: no caller kind, expiry or revocation check.
    from services.settings import load_settings

    path = tmp_path / "registry.json"
    monkeypatch.setenv("CORRIDOR_CREDENTIALS_FILE", str(path))
    found = lookup_from_settings(load_settings())
    assert isinstance(found, RegistryFile) and found.path == path


def test_an_engine_on_outside_servers_without_a_registry_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.cli.errors import UsageError
    from services.cli.stack_registry import registry_lookup
    from services.settings import load_settings

    class OutsideServers:
        engine_creds = None  # NATS_URL: this process runs no nats-server of its own
        home = Path("/nonexistent")

    monkeypatch.delenv("CORRIDOR_CREDENTIALS_FILE", raising=False)
    with pytest.raises(UsageError, match="credentials_file"):
        registry_lookup(OutsideServers(), load_settings())  # type: ignore[arg-type]
