"""Which URLs a webhook may be sent to (ADR 0177): http or https, a host, no credentials in the
URL (it is stored in the log), within the length limit; loopback only where the deployment
allows it (tests and the dev stack), since on a server it would let any caller make the
dispatcher call services that listen on the server's own loopback interface."""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

from schemas import errors
from schemas.webhook_messages import WEBHOOK_URL_CHARS_MAX

SCHEMES: Final = ("http", "https")
LOOPBACK_NAMES: Final = ("localhost", "localhost.localdomain")


def check_url(url: str, *, allow_loopback: bool) -> None:
    """Raise a coded error naming ``url`` for a URL no webhook may be sent to."""
    if len(url) > WEBHOOK_URL_CHARS_MAX:
        raise errors.SchemaViolation(
            f"url is longer than {WEBHOOK_URL_CHARS_MAX} characters", field="url"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise errors.SchemaViolation("url is not a valid URL", field="url") from None
    if parts.scheme not in SCHEMES:
        raise errors.SchemaViolation("url must be http:// or https://", field="url")
    if not host:
        raise errors.SchemaViolation("url has no host", field="url")
    if parts.username is not None or parts.password is not None:
        # The URL is recorded in the log and shown by `webhooks list`: no secret may ride in it.
        raise errors.SchemaViolation("url must not carry a user or password", field="url")
    if not allow_loopback and is_loopback(host):
        raise errors.Forbidden(
            "url names a loopback host; this deployment does not allow that", field="url"
        )


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
