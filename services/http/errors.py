"""Errors as ``{"error": {"code", "message", "field"}}`` with the engine's NATS codes
(``schemas/errors.py``), and the status code each code maps to (ADR 0173).

Every exception a handler or middleware raises ends here; an unexpected one becomes a 500 with
code ``internal`` and no detail (the log has the type, never a secret or a body).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec

log = structlog.get_logger("corridor.http")

# The engine's refusal codes to HTTP statuses. A code not listed is a well-formed request the
# engine refused for a business reason (policy, an invoice it cannot pay): 422.
STATUS_OF_CODE: Final = {
    "malformed_json": 400,
    "missing_field": 400,
    "unknown_type": 400,
    "unknown_version": 400,
    "schema_violation": 400,
    "unstorable_text": 400,
    "nesting_too_deep": 400,
    "bad_subject": 400,
    # An invoice that cannot be paid as given (refined codes start with ``invoice_``).
    "invalid_invoice": 400,
    "unauthorized": 401,
    "identity_mismatch": 403,
    "forbidden": 403,
    "two_person_rule": 403,
    "signature_missing": 403,
    "signature_invalid": 403,
    "key_revoked": 403,
    "not_found": 404,
    "idempotency_mismatch": 409,
    "idempotency_key_reused": 409,  # a channel operation's key with another request
    "already_decided": 409,
    "not_awaiting_approval": 409,
    "unknown_op": 404,
    "invalid_transition": 409,
    "payload_too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}
STATUS_UNLISTED: Final = 422


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error answer: ``code`` is the contract (the NATS codes), ``message`` is for
    people, ``field`` names the input at fault when there is one."""

    error: ErrorDetail


_ERROR_STATUSES: Final = {
    400: "Invalid input (schema_violation, missing_field, malformed_json, invalid_invoice...)",
    401: "No API key, or an unknown or revoked one (unauthorized)",
    403: "identity_mismatch, forbidden (the key's role), two_person_rule",
    404: "not_found (another caller's intent reads as missing)",
    409: "idempotency_mismatch (same key, another body), invalid_transition",
    413: "payload_too_large",
    422: "Refused by the engine for another reason (see code)",
    503: "unavailable: no engine answered; retry after Retry-After (same Idempotency-Key)",
}
# What every authenticated route may answer, in the OpenAPI document.
ERROR_RESPONSES: Final = {
    status: ResponseSpec(data_container=ErrorBody, description=what, generate_examples=False)
    for status, what in _ERROR_STATUSES.items()
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def refusal(reply: dict[str, Any]) -> ApiError:
    """The engine's ``ok: false`` reply as an ``ApiError`` with the same code and field."""
    error = reply.get("error") or {}
    code = str(error.get("code") or "error")
    status = STATUS_OF_CODE.get(code, 400 if code.startswith("invoice") else STATUS_UNLISTED)
    return ApiError(status, code, str(error.get("message") or code), field=error.get("field"))


def body(code: str, message: str, field: str | None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def _response(error: ApiError) -> Response[Any]:
    return Response(
        body(error.code, error.message, error.field),
        status_code=error.status,
        headers=error.headers,
    )


def _validation_field(exc: ValidationException) -> tuple[str | None, str]:
    """msgspec's first complaint: the field it names (``key``, or a name in backticks)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    message = str(first.get("message") or exc.detail)
    key = first.get("key")
    if key and key != "data":
        return str(key), message
    for quote in ("`", "'"):  # msgspec quotes a field with backticks, Litestar a parameter
        if message.count(quote) >= 2:
            return message.split(quote)[1], message
    return None, message


def on_api_error(_request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _response(exc)


def on_http_exception(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        field, message = _validation_field(exc)
        code = "missing_field" if "missing required" in message.lower() else "schema_violation"
        return _response(ApiError(400, code, message, field=field))
    status = exc.status_code
    if status >= 500:  # a fault of ours (e.g. a dependency failing its check): say which
        cause = exc.__cause__ or exc.__context__
        log.error("http_internal_error", status=status, cause=type(cause).__name__)
    if status == 413:
        return _response(ApiError(413, "payload_too_large", "the request body is too large"))
    if status == 400:
        return _response(ApiError(400, "malformed_json", str(exc.detail)))
    names = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    return _response(ApiError(status, names.get(status, "error"), str(exc.detail)))


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("http_unexpected_error", path=request.url.path, error=type(exc).__name__)
    return _response(ApiError(500, "internal", "internal error"))


HANDLERS: Final = {
    ApiError: on_api_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
