"""Authenticated NATS connections for tests (every nats-server in the suite takes nkey users
only, ADR 0060).

``connect_as(url)`` connects as ``CORRIDOR_CREDS`` (the session's engine credential, set by
tests/conftest.py); ``connect_as(url, creds)`` as another user, with that user's own inbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from services.bus.jetstream import credential_options

# nats-py's keywords that already say who connects; a bare connect names none of them.
IDENTITY_OPTIONS = ("nkeys_seed", "nkeys_seed_str", "user_credentials", "user", "token")


async def connect_as(url: str, creds: Path | None = None, **options: Any) -> Client:
    """``nats.connect(url)`` as the nkey user in ``creds`` (default ``CORRIDOR_CREDS``)."""
    return await nats.connect(url, **credential_options(creds), **options)
