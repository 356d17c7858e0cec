"""Parameter checks shared by the simulated CLN node's commands, with lightningd's texts
(common/json_param.c): a missing or mistyped parameter is JSON-RPC error -32602."""

from __future__ import annotations

from typing import Any

from services.sim.jsonrpc import JSONRPC_INVALID_PARAMS, RpcFailure


def required(params: dict[str, Any], name: str) -> Any:
    if params.get(name) is None:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"missing required parameter: {name}")
    return params[name]


def msat(value: Any, name: str) -> int:
    """CLN's msat parameter: an integer, or a string with an ``msat`` suffix."""
    if isinstance(value, str) and value.endswith("msat") and value[:-4].isdigit():
        value = int(value[:-4])
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"{name}: should be a millisatoshi amount")
    return value


def non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"{name}: should be a non-negative integer")
    return value
