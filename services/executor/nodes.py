"""``--node`` URIs to a ``NodePort``: ``lnd://``, ``cln://`` or ``sim://NAME``.

``sim://NAME`` is looked up in the ``nodes`` list of ``DIR/endpoints.json``, written by the
simulator runner: ``{"nodes": [{"name", "role", "region", "implementation", "endpoint",
"pubkey"}]}``. Credentials stay in the endpoint URI and are never logged.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any, Final

import msgspec

from services.executor.errors import NodeUriError
from services.lightning.port import NodePort

ENDPOINTS_FILE_NAME: Final = "endpoints.json"
# Node names become NATS subject tokens and consumer names.
NODE_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SimNodeEntry(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    role: str
    region: str | None
    implementation: str
    endpoint: str
    pubkey: str


class ResolvedNode(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # the node name the engine's router uses in work orders
    uri: str  # the adapter URI (may reference credential files; never log it)


def resolve_node(
    uri: str, *, region: str, state_dir: Path, name: str | None = None
) -> ResolvedNode:
    """The node's name and adapter URI.

    ``name`` defaults to the sim node's name, or ``<region>-<scheme>`` for lnd:// and cln://.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise NodeUriError("--node must be lnd://..., cln://... or sim://NAME")
    if scheme == "sim":
        entry = _sim_entry(state_dir, rest)
        if entry.region not in (None, region):
            raise NodeUriError(f"sim node {entry.name!r} is in region {entry.region}, not {region}")
        resolved = ResolvedNode(name=name or entry.name, uri=entry.endpoint)
    elif scheme in ("lnd", "cln"):
        resolved = ResolvedNode(name=name or f"{region}-{scheme}", uri=uri)
    else:
        raise NodeUriError(f"unknown node scheme {scheme!r}: use lnd://, cln:// or sim://")
    if not NODE_NAME_RE.match(resolved.name):
        raise NodeUriError(f"node name {resolved.name!r} must match {NODE_NAME_RE.pattern}")
    return resolved


def _sim_entry(state_dir: Path, sim_name: str) -> SimNodeEntry:
    path = state_dir / ENDPOINTS_FILE_NAME
    try:
        raw: Any = json.loads(path.read_text())
        entries = msgspec.convert(raw.get("nodes", []), list[SimNodeEntry])
    except (OSError, ValueError, AttributeError, msgspec.ValidationError) as exc:
        raise NodeUriError(f"cannot read simulated nodes from {path}: {exc}") from None
    for entry in entries:
        if entry.name == sim_name:
            return entry
    raise NodeUriError(f"{path} lists no simulated node {sim_name!r}")


def adapter_for(uri: str) -> NodePort:
    """The adapter for ``uri``, via ``services.lightning.factory`` when it is installed."""
    try:
        factory = importlib.import_module("services.lightning.factory")
    except ImportError:
        factory = None
    if factory is not None:
        adapter: NodePort = factory.adapter_from_uri(uri)
        return adapter
    if uri.startswith("lnd://"):
        from services.lightning.lnd import LndAdapter

        return LndAdapter.from_uri(uri)
    raise NodeUriError("this build has no adapter for " + uri.partition("://")[0] + ":// nodes")
