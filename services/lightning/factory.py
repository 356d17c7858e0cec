"""Build a NodePort adapter from an endpoint URI.

``cln:///abs/path/to/lightning-rpc`` and ``lnd://host:port?tlscert=PATH&macaroon=PATH``. The
adapter modules are imported lazily so that one implementation's client library is not needed
to use the other.
"""

from __future__ import annotations

from typing import Any

from services.lightning.port import NodePort


class UnsupportedEndpoint(ValueError):
    """The URI scheme names no adapter we have."""


def adapter_from_uri(uri: str, **opts: Any) -> NodePort:
    """An adapter for ``uri``; ``opts`` (e.g. ``timeout_s``) go to the adapter."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme == "cln":
        from services.lightning.cln import ClnAdapter

        return ClnAdapter.from_uri(uri, **opts)
    if scheme == "lnd":
        from services.lightning.lnd import LndAdapter, parse_lnd_uri

        host, port, tls_cert_path, macaroon_path = parse_lnd_uri(uri)
        return LndAdapter(host, port, tls_cert_path, macaroon_path, **opts)
    raise UnsupportedEndpoint(
        f"unsupported node endpoint {uri.split('?', 1)[0]!r}: use cln:// or lnd://"
    )
