"""``build_executor``: resolve the node and load the keysend secret for one worker."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

from services.bus.jetstream import resolve_creds
from services.domain.jit_channels.fees import FeeMenuEntry
from services.executor.errors import NodeUriError
from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
from services.executor.limits import ExecutorLimits
from services.executor.nodes import NODE_NAME_RE, adapter_for, resolve_node
from services.executor.worker import Executor
from services.identity.nats_auth import seed_path
from services.lightning.port import NodeError
from services.lsps.lsps2_server import DEFAULT_MENU
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir


def default_executor_id(region: str, node_name: str) -> str:
    host = "".join(c for c in socket.gethostname() if c.isalnum())[:16] or "host"
    return f"{region}-{node_name}-{host}-{os.getpid()}"[:64]


def build_executor(
    *,
    nats_url: str,
    region: str,
    node_uri: str,
    state_dir: Path,
    executor_id: str | None = None,
    node_name: str | None = None,
    secret_path: Path | None = None,
    limits: ExecutorLimits | None = None,
    duplicate_window_s: int = 120,
    creds: Path | None = None,
    jit_lsp_nodes: Sequence[str] = (),
    jit_lsp: bool = False,
    jit_menu: Sequence[FeeMenuEntry] = DEFAULT_MENU,
) -> Executor:
    """Raises ``NodeUriError`` for a node that cannot be resolved or opened, and
    ``KeyFileError`` when ``state_dir/keys`` holds no engine public key (ADR 0063).

    ``creds``: the nkey seed to connect with; default ``CORRIDOR_CREDS``, else the executor
    credential ``corridor up`` made for this node in ``state_dir``.
    """
    resolved = resolve_node(node_uri, region=region, state_dir=state_dir, name=node_name)
    try:
        adapter = adapter_for(resolved.uri)
    except (ValueError, NodeError) as exc:
        raise NodeUriError(f"cannot open node {resolved.name!r}: {exc}") from None
    worker_id = executor_id or default_executor_id(region, resolved.name)
    if not NODE_NAME_RE.match(worker_id):
        raise NodeUriError(f"executor id {worker_id!r} must match {NODE_NAME_RE.pattern}")
    # Every worker of one node must derive the same keysend hashes: they share this secret.
    secret = load_or_create_secret(secret_path or state_dir / SECRET_FILE_NAME)
    return Executor(
        nats_url=nats_url,
        region=region,
        node_name=resolved.name,
        node=adapter,
        executor_id=worker_id,
        secret=secret,
        limits=limits,
        duplicate_window_s=duplicate_window_s,
        creds=resolve_creds(creds, fallback=seed_path(state_dir, "executor", resolved.name)),
        verifier=FileKeyring(keys_dir(state_dir) / PUBLIC_KEYS_FILE),
        # An LSP node's executor intercepts and carries out JIT orders (ADR 0261).
        jit_lsp=jit_lsp or resolved.name in jit_lsp_nodes,
        jit_menu=jit_menu,
    )
