"""LSPS0 framing (bLIP-50): JSON-RPC 2.0 in BOLT 8 custom messages of type 37913.

A payload is one UTF-8 JSON object (whitespace around it allowed), nothing after it, and no
NUL byte. Clients send requests only, with a high-entropy string ``id`` and by-name
``params``; LSPs send responses and notifications. Amounts in LSPS are decimal strings
(``_sat``/``_msat``), parsed here into integers and checked; never floats.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

LSPS0_MESSAGE_TYPE: Final = 37913
# BOLT 8 payloads are at most 65533 bytes; bLIP-50 expects messages far below 1000.
PAYLOAD_BYTES_MAX: Final = 65533
# Deep nesting is no LSPS message; bounding it keeps a hostile peer from exhausting the stack.
NESTING_MAX: Final = 16
ID_CHARS_MAX: Final = 256
METHOD_CHARS_MAX: Final = 128
# An LSPS amount in sat or msat: 21e6 BTC is 2.1e18 msat, 19 digits.
AMOUNT_DIGITS_MAX: Final = 19

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
CLIENT_REJECTED: Final = 1  # bLIP-50 "001"

_DIGITS = re.compile(r"0|[1-9][0-9]*")


class BadMessage(ValueError):
    """bLIP-50's "bad message format": the payload is not one JSON-RPC object."""


class LspsError(Exception):
    """A JSON-RPC error object, sent by a server or received by a client."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(*, unrecognized: list[str] | None = None, **data: Any) -> LspsError:
    """bLIP-50: a -32602 MUST carry ``data`` with at least ``unrecognized``."""
    return LspsError(INVALID_PARAMS, "Invalid params", {"unrecognized": unrecognized or [], **data})


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    id: str
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class Response:
    id: str | None
    result: dict[str, Any] | None = None
    error: LspsError | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Notification:
    method: str
    params: dict[str, Any]


def parse_object(data: bytes) -> dict[str, Any]:
    """The payload's one JSON object; ``BadMessage`` for anything else."""
    if len(data) > PAYLOAD_BYTES_MAX:
        raise BadMessage("payload too large")
    if b"\x00" in data:
        raise BadMessage("payload contains a NUL byte")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadMessage("payload is not UTF-8") from None
    try:
        # json.loads refuses trailing data ("{ } { }") and accepts JSON whitespace around.
        value = json.loads(text, parse_float=_refuse_float_literal)
    except (json.JSONDecodeError, RecursionError):
        raise BadMessage("payload is not one complete JSON value") from None
    if not isinstance(value, dict):
        raise BadMessage("payload is not a JSON object")
    if _depth(value) > NESTING_MAX:
        raise BadMessage("payload nests too deeply")
    return value


def parse_request(data: bytes) -> Request:
    """What an LSP reads: one JSON-RPC 2.0 request with a string id and by-name params."""
    obj = parse_object(data)
    if obj.get("jsonrpc") != "2.0":
        raise BadMessage("not JSON-RPC 2.0")
    request_id = obj.get("id")
    method = obj.get("method")
    params = obj.get("params", {})
    if not isinstance(request_id, str) or not 0 < len(request_id) <= ID_CHARS_MAX:
        raise BadMessage("a request needs a string id")
    if not isinstance(method, str) or not 0 < len(method) <= METHOD_CHARS_MAX:
        raise BadMessage("a request needs a method")
    if not isinstance(params, dict):
        raise BadMessage("params must be by name")
    return Request(id=request_id, method=method, params=params)


def parse_reply(data: bytes) -> Response | Notification:
    """What a client reads: a response (result or error) or a notification."""
    obj = parse_object(data)
    if obj.get("jsonrpc") != "2.0":
        raise BadMessage("not JSON-RPC 2.0")
    if "id" not in obj:
        method, params = obj.get("method"), obj.get("params", {})
        if not isinstance(method, str) or not isinstance(params, dict):
            raise BadMessage("neither a response nor a notification")
        return Notification(method=method, params=params)
    request_id = obj["id"]
    if request_id is not None and not isinstance(request_id, str):
        raise BadMessage("a response id is a string or null")
    if ("result" in obj) == ("error" in obj):
        raise BadMessage("a response has exactly one of result and error")
    if "result" in obj:
        if not isinstance(obj["result"], dict):
            raise BadMessage("an LSPS result is an object")
        return Response(id=request_id, result=obj["result"])
    error = obj["error"]
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        raise BadMessage("an error object needs an integer code")
    data_field = error.get("data")
    return Response(
        id=request_id,
        error=LspsError(
            error["code"],
            str(error.get("message", ""))[: METHOD_CHARS_MAX * 4],
            data_field if isinstance(data_field, dict) else None,
        ),
    )


def encode_request(request: Request) -> bytes:
    return _dumps(
        {"jsonrpc": "2.0", "id": request.id, "method": request.method, "params": request.params}
    )


def encode_result(request_id: str, result: dict[str, Any]) -> bytes:
    return _dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def encode_error(request_id: str | None, error: LspsError) -> bytes:
    return _dumps({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})


def encode_notification(method: str, params: dict[str, Any]) -> bytes:
    return _dumps({"jsonrpc": "2.0", "method": method, "params": params})


def amount(value: Any, *, field: str) -> int:
    """An LSPS0 ``sat``/``msat`` value: a decimal string of a non-negative integer."""
    if not isinstance(value, str) or len(value) > AMOUNT_DIGITS_MAX or not _DIGITS.fullmatch(value):
        raise invalid_params(property=field, message="must be a decimal string of an integer")
    return int(value)


def amount_str(value: int) -> str:
    assert value >= 0, value
    return str(value)


def _dumps(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(data) <= PAYLOAD_BYTES_MAX, "an LSPS0 message must fit one BOLT 8 payload"
    return data


def _refuse_float_literal(text: str) -> Any:
    # LSPS numbers are integers or decimal strings; a float literal is kept as its text so a
    # field check refuses it, rather than turned into an inexact float.
    return text


def _depth(value: Any, level: int = 1) -> int:
    if level > NESTING_MAX:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level
