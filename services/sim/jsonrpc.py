"""JSON-RPC 2.0 over a unix socket, framed the way Core Lightning does it.

Requests are bare JSON objects with no delimiter, so the server parses incrementally with
``json.JSONDecoder.raw_decode``; every response ends with ``"\\n\\n"``, which is what
pyln-client's reader splits on. pyln opens a new connection per call, but several requests on
one connection are served in order too. Used by the simulated CLN nodes and the sim control
endpoint.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Linux sun_path holds 108 bytes including the terminating NUL.
UNIX_PATH_BYTES_MAX = 107
# A request larger than this is hostile or broken; CLN's own requests are a few KiB.
REQUEST_BYTES_MAX = 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024

JSONRPC_INVALID_REQUEST = -32600
JSONRPC_METHOD_NOT_FOUND = -32601
JSONRPC_INVALID_PARAMS = -32602
JSONRPC_PARSE_ERROR = -32700
CATCHALL = -1

Params = dict[str, Any] | list[Any]
Handler = Callable[[str, Params], Awaitable[Any]]


class RpcFailure(Exception):
    """Raise from a handler to answer with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(str(path))) > UNIX_PATH_BYTES_MAX:
        raise ValueError(
            f"unix socket path is longer than {UNIX_PATH_BYTES_MAX} bytes: {path}; "
            "use a shorter state directory"
        )


class JsonRpcUnixServer:
    """Serves ``handler(method, params)`` on ``path``; can stop listening and resume."""

    def __init__(self, path: Path, handler: Handler, *, name: str) -> None:
        check_socket_path(path)
        self.path = path
        self._handler = handler
        self._name = name
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        if self._server is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed run
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)  # like lightning-rpc: only the owner may call

    async def pause(self) -> None:
        """Stop accepting and drop open connections; the socket file stays, so connecting is
        refused, like a crashed lightningd."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        # Abort first so clients see the connection drop at once (a pay in progress then
        # looks exactly like lightningd dying under it), then end the handlers.
        for task, writer in list(self._connections.items()):
            writer.transport.abort()
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        await self.pause()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self._serve_requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        except asyncio.CancelledError:
            # Only pause()/stop() cancel these; ending quietly keeps asyncio's stream callback
            # from logging the cancellation as an error (it calls task.exception()).
            pass
        finally:
            self._connections.pop(task, None)
            writer.transport.abort()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        decoder = json.JSONDecoder()
        # Incremental: a multi-byte character split across two reads is not an error.
        text = codecs.getincrementaldecoder("utf-8")()
        buffer = ""
        while True:
            chunk = await reader.read(READ_CHUNK_BYTES)
            if not chunk:
                return
            try:
                buffer += text.decode(chunk)
            except UnicodeDecodeError:
                await _send(writer, _error_reply(None, JSONRPC_PARSE_ERROR, "not UTF-8"))
                return
            while True:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                try:
                    request, end = decoder.raw_decode(buffer)
                except json.JSONDecodeError:
                    if len(buffer) > REQUEST_BYTES_MAX:
                        await _send(
                            writer, _error_reply(None, JSONRPC_PARSE_ERROR, "request too large")
                        )
                        return
                    break  # incomplete: read more
                buffer = buffer[end:]
                await _send(writer, await self._dispatch(request))

    async def _dispatch(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error_reply(None, JSONRPC_INVALID_REQUEST, "expected a JSON-RPC request object")
        request_id = request.get("id")
        params = request.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict | list):
            return _error_reply(
                request_id, JSONRPC_INVALID_PARAMS, "params must be object or array"
            )
        try:
            result = await self._handler(request["method"], params)
        except RpcFailure as failure:
            return {"jsonrpc": "2.0", "id": request_id, "error": failure.to_json()}
        except Exception:
            # A bug in the simulator: answer like lightningd's catch-all and keep serving.
            log.exception("jsonrpc_handler_crashed", server=self._name, method=request["method"])
            return _error_reply(request_id, CATCHALL, "internal error in simulated node")
        return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _error_reply(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


async def _send(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
    # Compact JSON never contains "\n\n", so the terminator is unambiguous.
    writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n\n")
    await writer.drain()


async def call_unix(
    path: Path, method: str, params: Params | None = None, *, timeout_s: float = 10.0
) -> Any:
    """A minimal async client for the same framing (used by the sim CLI for control calls)."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
            writer.write(json.dumps(request).encode())
            await writer.drain()
            data = b""
            while b"\n\n" not in data:
                chunk = await reader.read(READ_CHUNK_BYTES)
                if not chunk:
                    raise ConnectionError("connection closed before the reply")
                data += chunk
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    reply = json.loads(data.split(b"\n\n", 1)[0])
    if "error" in reply:
        error = reply["error"]
        raise RpcFailure(error.get("code", CATCHALL), error.get("message", ""), error.get("data"))
    return reply["result"]
