"""Connecting to NATS and declaring Corridor's JetStream streams."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from services.bus import subjects
from services.bus.reconnects import Reconnects
from services.bus.stream_limits import StreamLimits, apply_stream
from services.bus.stream_retention import DEFAULT_STREAM_LIMITS

log = structlog.get_logger("corridor.bus")


async def _quiet_error(exc: Exception) -> None:
    # nats-py's default error callback prints a traceback on every reconnect attempt.
    log.warning("nats_error", error=type(exc).__name__, detail=str(exc)[:200])


# The seed file every connect uses when it is given none (ADR 0060).
CREDS_ENV: Final = "CORRIDOR_CREDS"


def resolve_creds(creds: Path | None, *, fallback: Path | None = None) -> Path | None:
    """The seed file to connect with: ``creds``, else ``CORRIDOR_CREDS``, else ``fallback``
    if that file exists, else none (and the server will refuse the connection)."""
    if creds is not None:
        return creds
    from_env = os.environ.get(CREDS_ENV, "")
    if from_env:
        return Path(from_env)
    if fallback is not None and fallback.exists():
        return fallback
    return None


def credential_options(creds: Path | None, *, inbox_prefix: str | None = None) -> dict[str, Any]:
    """``nats.connect`` keywords for ``creds`` (resolved as ``resolve_creds``): the nkey seed,
    and the user's own inbox prefix, the only subtree its permissions let it subscribe to."""
    seed = resolve_creds(creds)
    if seed is None:
        return {} if inbox_prefix is None else {"inbox_prefix": inbox_prefix}
    from services.identity.nats_auth import inbox_prefix as own_inbox
    from services.identity.nats_auth import read_public_key

    prefix = inbox_prefix or own_inbox(read_public_key(seed))
    return {"nkeys_seed": str(seed), "inbox_prefix": prefix}


class CredentialRefused(Exception):
    """The server refused the credential on the first connect: retrying cannot help."""


async def connect(
    url: str,
    *,
    name: str,
    creds: Path | None = None,
    inbox_prefix: str | None = None,
    reconnects: Reconnects | None = None,
) -> Client:
    """A long-lived connection that reconnects forever, as the nkey user in ``creds``
    (default ``CORRIDOR_CREDS``); ``reconnects`` counts its reconnects.

    Raises ``CredentialRefused`` if the server refuses the credential before the first
    connect succeeds: nats-py would otherwise retry an unknown or revoked key forever.
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    options = credential_options(creds, inbox_prefix=inbox_prefix)
    refused = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        if "authorization violation" in str(exc).lower():
            refused.set()
        await _quiet_error(exc)

    connecting = asyncio.ensure_future(
        nats.connect(
            servers=servers,
            name=name,
            error_cb=on_error,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            **({"reconnected_cb": reconnects.reconnected} if reconnects is not None else {}),
            **options,
        )
    )
    refusal = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait({connecting, refusal}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        refusal.cancel()
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        who = options.get("nkeys_seed") or "no credential (set CORRIDOR_CREDS)"
        raise CredentialRefused(f"NATS at {url} refused {who}: not a live credential there")
    return connecting.result()


def stream_configs(duplicate_window_s: int, *, replicas: int = 1) -> list[StreamConfig]:
    """Each stream's shape; its limits come from ``StreamLimits`` (``stream_limits.py``).
    ``replicas``: copies on a cluster (``bus_stream_replicas``, ADR 0195)."""
    common: dict[str, Any] = {
        "storage": StorageType.FILE,
        "num_replicas": replicas,
        "duplicate_window": float(duplicate_window_s),
        "retention": RetentionPolicy.LIMITS,
    }
    return [
        # A work queue (ADR 0079): a command is deleted once the engine's one durable acks it
        # (committed or dead-lettered), so the stream holds only commands not yet handled.
        StreamConfig(
            name=subjects.CMD_STREAM,
            subjects=[subjects.CMD_WILDCARD],
            **{**common, "retention": RetentionPolicy.WORK_QUEUE},
        ),
        # The relay publishes events and work orders in atomic batches (ADR 0013).
        StreamConfig(
            name=subjects.EVT_STREAM, subjects=[subjects.EVT_WILDCARD], allow_atomic=True, **common
        ),
        StreamConfig(name=subjects.DLQ_STREAM, subjects=[subjects.DLQ_WILDCARD], **common),
        StreamConfig(
            name=subjects.DISPATCH_STREAM,
            subjects=[subjects.DISPATCH_WILDCARD],
            allow_atomic=True,
            **common,
        ),
        # Signed log checkpoints (ADR 0065): the server refuses deletes and purges, so the
        # signed heads outlive whoever can write the events table. Bounded by size only
        # (ADR 0079): a checkpoint is about 300 bytes, 1 per 1,000 events or 10 s at most.
        StreamConfig(
            name=subjects.CHECKPOINT_STREAM,
            subjects=[subjects.CHECKPOINT_WILDCARD],
            deny_delete=True,
            deny_purge=True,
            **common,
        ),
    ]


async def ensure_streams(
    js: JetStreamContext,
    *,
    duplicate_window_s: int,
    limits: Mapping[str, StreamLimits] | None = None,
    replicas: int = 1,
) -> None:
    """Create or update every stream; ``limits`` by stream name (default: the settings'
    defaults). Never overwrites a limit an operator changed (``stream_limits.py``); moves a
    stream to ``replicas`` copies (ADR 0195)."""
    by_name = limits if limits is not None else DEFAULT_STREAM_LIMITS
    for config in stream_configs(duplicate_window_s, replicas=replicas):
        assert config.name is not None
        await apply_stream(js, config, by_name[config.name])
