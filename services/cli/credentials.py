"""Which credential a command connects with, and who that makes it (ADR 0060).

Order: ``--creds FILE``, else ``CORRIDOR_CREDS``, else the credential ``corridor up`` made in
the state dir for the command's role: the one named by ``--caller-id``/``--operator-id`` when
the state dir holds it, else the role's default (caller ``local``, operator ``operator-1``,
auditor ``auditor-1``). The registry beside it says whose key that is: a command's subject
token is that id, since the server lets a credential publish under its own id only.

``main`` states what a command asks for (``CredentialRequest``, set for the command's run);
``resolve`` finds the file when the command connects. Importing this module costs only the
standard library (``corridor --help`` stays light, ADR 0020).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from services.identity.registry import Credential

CREDS_ENV: Final = "CORRIDOR_CREDS"  # services.bus.jetstream.CREDS_ENV, without importing NATS
DEFAULT_STATE_DIR: Final = Path(".corridor")  # services.endpoints.DEFAULT_STATE_DIR

# What `corridor up` makes in its state dir besides the engine's and the executors' own:
# (role, id, kind). The CLI's commands use these unless told otherwise.
STACK_CREDENTIALS: Final = (
    ("caller", "local", "service"),
    ("operator", "operator-1", None),
    ("operator", "operator-2", None),
    ("auditor", "auditor-1", None),
)
DEFAULT_IDS: Final = {"caller": "local", "operator": "operator-1", "auditor": "auditor-1"}
# The role each command acts in. `watch` reads events, which auditors and operators may.
COMMAND_ROLES: Final = {
    "submit": "caller", "cancel": "caller", "get": "caller", "corridors": "caller",
    "approve": "operator", "reject": "operator", "policy": "operator", "watch": "auditor",
    "dlq": "operator",
    "agents": "operator",
    "recon": "operator",
    "liquidity": "operator",
    "exceptions": "operator",
    "resolve": "operator",
    "webhooks": "caller",
    "channels": "operator",  # ADR 0234
    "payees": "operator",  # ADR 0270
    "lsp": "caller",  # ADR 0252: the local service caller orders and pays
}  # fmt: skip


@dataclass(frozen=True)
class CredentialRequest:
    """What a command asks for: its role, ``--creds`` if given, the id flag if given."""

    role: str
    explicit: Path | None = None
    wanted_id: str | None = None


@dataclass(frozen=True)
class ResolvedCredential:
    """The seed file to connect with (None: none found) and the registry's record of its key
    (None: the state dir does not know it, e.g. a credential for a remote stack)."""

    path: Path | None
    identity: Credential | None = None

    def token(self, roles: tuple[str, ...], given: str | None) -> str | None:
        """The subject token: the credential's id if it is of one of ``roles``, else
        ``given`` (the id flag; the server refuses it unless the credential allows it)."""
        if self.identity is not None and self.identity.role in roles:
            return self.identity.id
        return given

    def reader_subject(self, query: str) -> str:
        """``<query>.<role>.<id>``: a read names its reader, whose intents the engine shows
        (ADR 0061). Without a registry record, the bare subject, which only the engine's
        credential may publish on."""
        if self.identity is None:
            return query
        return f"{query}.{self.identity.role}.{self.identity.id}"


_request: contextvars.ContextVar[CredentialRequest | None] = contextvars.ContextVar(
    "corridor_credential_request", default=None
)


def request_for(args: argparse.Namespace) -> CredentialRequest | None:
    """The request of the command in ``args``, or None for one that picks its own (up,
    executor, demo, bench, creds) or talks to no stack."""
    role = COMMAND_ROLES.get(getattr(args, "command", "") or "")
    if role is None:
        return None
    wanted = getattr(args, "operator_id" if role == "operator" else "caller_id", None)
    return CredentialRequest(role=role, explicit=getattr(args, "creds", None), wanted_id=wanted)


@contextlib.contextmanager
def requested(request: CredentialRequest | None) -> Iterator[None]:
    """For the block: connections opened by the command use ``request``."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


def home_of(state_dir: Path | None) -> Path | None:
    """Where the registry is: the state dir as ``find_stack`` picks it (none under NATS_URL
    without --state-dir: a remote stack's registry is not here)."""
    if state_dir is not None:
        return state_dir
    return None if os.environ.get("NATS_URL") else DEFAULT_STATE_DIR


def resolve(state_dir: Path | None, *, role: str = "caller") -> ResolvedCredential:
    """The credential for the running command (``role`` if ``main`` set no request)."""
    request = _request.get() or CredentialRequest(role=role)
    home = home_of(state_dir)
    path = request.explicit or _from_env() or _made_by_up(home, request)
    if path is None:
        return ResolvedCredential(path=None)
    return ResolvedCredential(path=path, identity=_identity(home, path))


def _from_env() -> Path | None:
    value = os.environ.get(CREDS_ENV, "")
    return Path(value) if value else None


def _made_by_up(home: Path | None, request: CredentialRequest) -> Path | None:
    if home is None:
        return None
    from services.identity.nats_auth import seed_path

    roles = ("caller", "agent") if request.role == "caller" else (request.role,)
    candidates = [(r, request.wanted_id) for r in roles if request.wanted_id]
    candidates.append((request.role, DEFAULT_IDS[request.role]))
    for role, ident in candidates:
        assert ident is not None
        path = seed_path(home, role, ident)  # type: ignore[arg-type]
        if path.exists():
            return path
    return None


def _identity(home: Path | None, path: Path) -> Credential | None:
    if home is None:
        return None
    from services.identity.nats_auth import read_public_key
    from services.identity.registry import load_registry, registry_path

    registry_file = registry_path(home)
    if not registry_file.exists():
        return None
    return load_registry(registry_file).by_public_key(read_public_key(path))
