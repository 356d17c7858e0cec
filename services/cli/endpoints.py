"""``endpoints.json``: how scripts and operators find a running stack."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "endpoints.json"


class StackNotFound(Exception):
    pass


def write_endpoints(state_dir: Path, data: dict[str, Any]) -> Path:
    """Merge ``data`` into the file atomically; it may hold a database password, so 0600."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE_NAME
    current = read_endpoints_file(path) if path.exists() else {}
    current.update(data)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


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
    path = (state_dir or Path(".corridor")) / FILE_NAME
    if not path.exists():
        raise StackNotFound(
            f"no running stack: {path} not found (start one with `corridor up`, "
            "or set NATS_URL and DATABASE_URL)"
        )
    data = read_endpoints_file(path)
    return StackEndpoints(
        nats_url=str(data.get("nats_url", env_nats)),
        database_url=str(data.get("database_url", env_db)),
        raw=data,
    )
