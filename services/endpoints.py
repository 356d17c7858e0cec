"""``endpoints.json``: how scripts and operators find a running stack.

Several processes share one file: ``corridor up`` writes the engine's entries (``nats_url``,
``database_url``, ...), ``corridor sim up`` the simulator's (``nodes``, ``sim_control``).
``nats_auth`` is ``"nkey"``: the server takes nkey users only (ADR 0060). For a nats-server
it runs, ``corridor up`` adds what ``corridor creds`` needs to reload it: ``nats_pid``,
``nats_auth_file``, ``nats_monitor_url`` and ``credentials`` (the registry's directory). The
ownership rule (ADR 0020): a process adds only its own entries and, when it stops, removes only
the entries it added that still hold the value it wrote. It never deletes the file while
another process's entries are in it.

Every read-modify-write holds an exclusive ``flock`` on a lock file beside it and replaces the
document by rename, so a writer never loses another's entries and a reader (who takes no lock)
sees the old document or the new one, never half of one.

This module imports nothing from ``services.cli`` or ``services.sim``: both use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from services.filelock import exclusive

FILE_NAME: Final = "endpoints.json"
LOCK_NAME: Final = ".endpoints.json.lock"
DEFAULT_STATE_DIR: Final = Path(".corridor")
# A writer holds the lock for one small read and one rename; ten seconds of waiting means a
# process is stuck holding it, which is worth an error rather than a hang.
LOCK_WAIT_S: Final = 10.0


class StackNotFound(Exception):
    """No running stack where the caller looked (a one-line message for the user)."""


class EndpointsLocked(Exception):
    """Another process held the endpoints lock for longer than ``LOCK_WAIT_S``."""


def add_entries(state_dir: Path, entries: Mapping[str, Any]) -> Path:
    """Merge ``entries`` into ``state_dir/endpoints.json`` and return its path.

    The file may hold a database password, so it is created 0600.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE_NAME
    with _locked(state_dir):
        current = _read_or_empty(path)
        current.update(_normalised(entries))
        _replace(path, current)
    return path


def remove_entries(state_dir: Path, entries: Mapping[str, Any]) -> None:
    """Remove each key of ``entries`` whose value in the file is still the one given.

    A key another process has since rewritten is left alone; the file goes away only when no
    entry is left in it.
    """
    path = state_dir / FILE_NAME
    if not path.exists():
        return
    mine = _normalised(entries)
    with _locked(state_dir):
        current = _read_or_empty(path)
        remaining = {k: v for k, v in current.items() if k not in mine or mine[k] != v}
        if remaining == current:
            return
        if remaining:
            _replace(path, remaining)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# Before ADR 0020 every writer called this name; it merges, as ``add_entries`` does.
write_endpoints = add_entries


def read_endpoints_file(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise StackNotFound(f"{path} is not a JSON object")
    return data


@dataclass(frozen=True)
class StackEndpoints:
    nats_url: str
    database_url: str
    raw: dict[str, Any]


def find_stack(state_dir: Path | None) -> StackEndpoints:
    """An explicit ``--state-dir`` wins; then NATS_URL/DATABASE_URL; then ``.corridor/``."""
    env_nats, env_db = os.environ.get("NATS_URL", ""), os.environ.get("DATABASE_URL", "")
    if state_dir is None and env_nats:
        return StackEndpoints(nats_url=env_nats, database_url=env_db, raw={})
    path = (state_dir or DEFAULT_STATE_DIR) / FILE_NAME
    if not path.exists():
        raise StackNotFound(
            f"no running stack: {path} not found (start one with `corridor up`, "
            "or set NATS_URL and DATABASE_URL)"
        )
    try:
        data = read_endpoints_file(path)
    except (OSError, ValueError) as exc:
        raise StackNotFound(f"cannot read {path}: {exc}") from None
    nats_url = str(data.get("nats_url", env_nats))
    if not nats_url:
        raise StackNotFound(
            f"{path} names no engine (nats_url); is `corridor up` running on this state dir?"
        )
    return StackEndpoints(
        nats_url=nats_url, database_url=str(data.get("database_url", env_db)), raw=data
    )


def _locked(state_dir: Path) -> contextlib.AbstractContextManager[None]:
    return exclusive(state_dir / LOCK_NAME, wait_s=LOCK_WAIT_S, refused=EndpointsLocked)


def _read_or_empty(path: Path) -> dict[str, Any]:
    try:
        return read_endpoints_file(path)
    except FileNotFoundError:
        return {}


def _normalised(entries: Mapping[str, Any]) -> dict[str, Any]:
    """The entries as they read back from JSON (tuples become lists), so they compare equal."""
    normalised: dict[str, Any] = json.loads(json.dumps(dict(entries)))
    return normalised


def _replace(path: Path, document: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".endpoints.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
