"""API keys: ``Authorization: Bearer <token>`` to the credential it belongs to (ADR 0171).

Every path needs a key except ``OPEN_PATHS``: a router added later is closed by default. The
registry file is followed while the server runs (``services.identity.lookup.RegistryFile``),
so a revoked key stops working within a second, without a restart. Nothing here logs a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from services import tracing
from services.http.errors import ApiError
from services.http.gateway import INCOMING_TRACEPARENT
from services.identity.api_keys import API_KEY_ROLES, TOKEN_CHARS_MAX, token_hash
from services.identity.lookup import RegistryFile

# Health, metrics and the API's own description answer without a key.
# The console's page is its login page: it holds no data, and fetches everything with the key.
OPEN_PATHS: Final = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/console")
_OPEN_PATTERN: Final = "^(" + "|".join(p.replace(".", r"\.") for p in OPEN_PATHS) + ")$"
_SCHEME: Final = "bearer "


@dataclass(frozen=True)
class ApiPrincipal:
    """Who a request is: the credential its key belongs to."""

    role: str
    id: str
    kind: str | None


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


class ApiKeyMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, registry: RegistryFile) -> None:
        super().__init__(app, exclude=_OPEN_PATTERN, exclude_http_methods=[])
        self._registry = registry

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Any:
        INCOMING_TRACEPARENT.set(tracing.valid(connection.headers.get(tracing.TRACEPARENT)))
        header = connection.headers.get("authorization") or ""
        if not header[: len(_SCHEME)].lower() == _SCHEME:
            raise unauthorized("send the API key as `Authorization: Bearer <key>`")
        token = header[len(_SCHEME) :].strip()
        if not token or len(token) > TOKEN_CHARS_MAX:
            raise unauthorized("that is not an API key")
        credential = self._registry.by_api_key_hash(token_hash(token))
        if credential is None or credential.role not in API_KEY_ROLES:
            raise unauthorized("unknown or revoked API key")
        principal = ApiPrincipal(role=credential.role, id=credential.id, kind=credential.kind)
        return AuthenticationResult(user=principal, auth=None)


def require(principal: ApiPrincipal, roles: tuple[str, ...]) -> None:
    if principal.role not in roles:
        raise ApiError(
            403, "forbidden", f"a {principal.role} key may not do this (roles: {', '.join(roles)})"
        )
