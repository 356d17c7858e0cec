"""Which credential registry an engine a command starts checks callers against (ADR 0061).

``corridor up`` and ``corridor demo`` both start an engine: on their own nats-server, the
registry that server serves; on a given one (NATS_URL), the ``credentials_file`` setting, and
without it the engine refuses to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.cli.errors import UsageError
from services.devstack import DevStack
from services.settings import Settings


def registry_file(stack: DevStack, settings: Settings) -> Path | None:
    """The credential registry the engine checks callers against (ADR 0061): the one this
    stack's own server serves, else the ``credentials_file`` setting (NATS_URL)."""
    from services.identity.registry import registry_path

    if stack.engine_creds is not None:
        return registry_path(stack.home)
    return settings.credentials_file


def registry_lookup(stack: DevStack, settings: Settings) -> dict[str, Any]:
    """The engine's registry lookup. On given servers (NATS_URL) without ``credentials_file``
    it refuses to start: NATS permissions alone bind subjects, not caller kind, expiry or
    revocation, and an engine that checks nobody must not take traffic."""
    from services.identity.lookup import RegistryFile

    path = registry_file(stack, settings)
    if path is None:
        raise UsageError(
            "credentials_file is required when the NATS server is given (NATS_URL): set "
            "CORRIDOR_CREDENTIALS_FILE to the registry `corridor creds` writes"
        )
    return {"credentials": RegistryFile(path)}
