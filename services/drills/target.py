"""The stack a drill runs against, found as every CLI command finds it.

The engine's ``endpoints.json`` (``--state-dir``, else NATS_URL/DATABASE_URL, else
``.corridor/``) gives the NATS and PostgreSQL URLs; the simulated network's entries (``nodes``,
``sim_control``) are in the same file under ``corridor up``, or in ``--sim-state-dir`` when
``corridor sim up`` runs apart. The load submits as a caller, with the credential the CLI
resolves for that role (``--creds``, ``CORRIDOR_CREDS``, or the one ``corridor up`` made).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.endpoints import DEFAULT_STATE_DIR, FILE_NAME, find_stack, read_endpoints_file


class TargetError(Exception):
    """The stack lacks something the drill needs (a one-line message for the user)."""


@dataclass(frozen=True)
class Target:
    nats_url: str
    database_url: str = field(repr=False)  # holds a password
    sim_nodes: list[dict[str, Any]]
    sim_control: Path
    caller_creds: Path | None
    caller_id: str
    corridor: str
    state_dir: Path


def find_target(
    state_dir: Path | None,
    sim_state_dir: Path | None,
    *,
    creds: Path | None,
    caller_id: str | None,
    corridor: str,
) -> Target:
    from services.cli.credentials import resolve

    stack = find_stack(state_dir)
    if not stack.database_url:
        raise TargetError("the stack names no database_url: a drill reads the log")
    sim = dict(stack.raw)
    if sim_state_dir is not None:
        path = sim_state_dir / FILE_NAME
        try:
            sim = read_endpoints_file(path)
        except (OSError, ValueError) as exc:
            raise TargetError(f"cannot read {path}: {exc}") from None
    if "nodes" not in sim or "sim_control" not in sim:
        raise TargetError(
            "no simulated network found (nodes, sim_control): the drills pay through `corridor "
            "sim` (run `corridor up`, or pass --sim-state-dir of `corridor sim up`)"
        )
    resolved = resolve(state_dir, role="caller")
    creds_path = creds or resolved.path
    ident = caller_id or resolved.token(("caller", "agent"), None) or "local"
    return Target(
        nats_url=stack.nats_url,
        database_url=stack.database_url,
        sim_nodes=list(sim["nodes"]),
        sim_control=Path(sim["sim_control"]),
        caller_creds=creds_path,
        caller_id=ident,
        corridor=corridor,
        state_dir=state_dir or DEFAULT_STATE_DIR,
    )
