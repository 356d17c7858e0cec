"""The simulated Core Lightning node's ``datastore`` and ``listdatastore``: a key-value store
kept with the node, as lightningd keeps it in its database (lightningd/datastore.c).

Semantics follow upstream doc/schemas/datastore.json and listdatastore.json (not among the
conformance copies; the tests hold verbatim copies, tests/sim/upstream_cln_schemas/): a key is a
list of strings (a single string is a one-element key); a key has a value or children, never
both; ``mode`` decides whether a write may create, replace or append; ``generation`` counts the
updates and, when given, must match for the write to happen. ``listdatastore`` answers the key
itself if it holds a value, else its immediate children (a child with children of its own shows
its key only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from services.sim.jsonrpc import JSONRPC_INVALID_PARAMS, RpcFailure

# common/jsonrpc_errors.h
DATASTORE_UPDATE_ALREADY_EXISTS: Final = 1202
DATASTORE_UPDATE_DOES_NOT_EXIST: Final = 1203
DATASTORE_UPDATE_WRONG_GENERATION: Final = 1204
DATASTORE_UPDATE_HAS_CHILDREN: Final = 1205
DATASTORE_UPDATE_NO_CHILDREN: Final = 1206

PARAMETERS: Final[dict[str, tuple[str, ...]]] = {
    "datastore": ("key", "string", "hex", "mode", "generation"),
    "listdatastore": ("key",),
}
MODES: Final = (
    "must-create", "must-replace", "create-or-replace", "must-append", "create-or-append",
)  # fmt: skip
# The simulator keeps the store in memory: a bound keeps a runaway client from eating it. Our
# adapter writes one entry per channel open, far below this.
ENTRIES_MAX: Final = 100_000
# lightningd stores values as blobs in sqlite; a value far above this is a client bug here.
VALUE_BYTES_MAX: Final = 65_536
KEY_PARTS_MAX: Final = 32


@dataclass(frozen=True, slots=True)
class _Entry:
    value: bytes
    generation: int


def _key(value: Any) -> tuple[str, ...]:
    parts = [value] if isinstance(value, str) else value
    if (
        not isinstance(parts, list)
        or not parts
        or len(parts) > KEY_PARTS_MAX
        or not all(isinstance(p, str) for p in parts)
    ):
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "key: should be an array of strings")
    return tuple(parts)


def _shown(key: tuple[str, ...], entry: _Entry) -> dict[str, Any]:
    shown: dict[str, Any] = {"key": list(key), "generation": entry.generation}
    shown["hex"] = entry.value.hex()
    with contextlib.suppress(UnicodeDecodeError):  # "string" only if valid utf-8
        shown["string"] = entry.value.decode("utf-8")
    return shown


class ClnDatastore:
    """One node's store; ``methods()`` is what the server registers."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], _Entry] = {}

    def methods(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        return {"datastore": self.datastore, "listdatastore": self.listdatastore}

    async def datastore(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("key") is None:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "missing required parameter: key")
        key = _key(params["key"])
        value = _value(params)
        mode = params.get("mode", "must-create")
        if mode not in MODES:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, f"mode: should be one of {', '.join(MODES)}")
        generation = params.get("generation")
        if generation is not None and (
            mode not in ("must-replace", "must-append")
            or isinstance(generation, bool)
            or not isinstance(generation, int)
        ):
            raise RpcFailure(
                JSONRPC_INVALID_PARAMS, "generation: only valid with must-replace and must-append"
            )
        for depth in range(1, len(key)):
            if key[:depth] in self._entries:
                raise RpcFailure(
                    DATASTORE_UPDATE_NO_CHILDREN,
                    f"Parent key [{','.join(key[:depth])}] exists",
                )
        if any(k[: len(key)] == key and len(k) > len(key) for k in self._entries):
            raise RpcFailure(DATASTORE_UPDATE_HAS_CHILDREN, "Key has children")
        old = self._entries.get(key)
        if old is None and mode in ("must-replace", "must-append"):
            raise RpcFailure(DATASTORE_UPDATE_DOES_NOT_EXIST, "Key does not exist")
        if old is not None and mode == "must-create":
            raise RpcFailure(DATASTORE_UPDATE_ALREADY_EXISTS, "Key already exists")
        if old is not None and generation is not None and generation != old.generation:
            raise RpcFailure(DATASTORE_UPDATE_WRONG_GENERATION, "generation is different")
        if old is None and len(self._entries) >= ENTRIES_MAX:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, f"datastore full ({ENTRIES_MAX} entries)")
        if old is not None and mode.endswith("append"):
            value = old.value + value
        if len(value) > VALUE_BYTES_MAX:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, f"value over {VALUE_BYTES_MAX} bytes")
        entry = _Entry(value, 0 if old is None else old.generation + 1)
        self._entries[key] = entry
        return _shown(key, entry)

    async def listdatastore(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = () if params.get("key") is None else _key(params["key"])
        exact = self._entries.get(prefix)
        if exact is not None:
            return {"datastore": [_shown(prefix, exact)]}
        shown: dict[tuple[str, ...], dict[str, Any]] = {}
        for key in sorted(self._entries):
            if len(key) <= len(prefix) or key[: len(prefix)] != prefix:
                continue
            child = key[: len(prefix) + 1]
            if child == key:
                shown[child] = _shown(key, self._entries[key])
            else:
                shown.setdefault(child, {"key": list(child)})
        return {"datastore": list(shown.values())}


def _value(params: dict[str, Any]) -> bytes:
    text, hexed = params.get("string"), params.get("hex")
    if text is not None and hexed is not None:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "Cannot have both hex and string")
    if text is not None:
        if not isinstance(text, str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "string: should be a string")
        return text.encode("utf-8")
    if hexed is not None:
        try:
            return bytes.fromhex(hexed)
        except (TypeError, ValueError):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "hex: should be hex") from None
    return b""
