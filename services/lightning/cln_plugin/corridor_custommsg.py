#!/usr/bin/env python3
"""Corridor's Core Lightning plugin: hands incoming custom messages to the Corridor adapter.

lightningd gives incoming custom messages only to plugins (the ``custommsg`` hook,
doc/schemas/hook/custommsg.json), so the adapter cannot read them over JSON-RPC by itself
(ADR 0250). This plugin registers the hook (filtered to the message types given by the
``corridor-custommsg-types`` option, LSPS0's 37913 by default), keeps the latest messages in a
bounded ring with increasing indexes, and serves them through one RPC method that lightningd
forwards to it, ``corridor-waitcustommsgs``: a long poll shaped like ``waitanyinvoice``.

    corridor-waitcustommsgs [after_index] [timeout]
      without after_index: answers at once with no messages and the current next_index
      (a cursor from now); with it: the messages with a higher index, waiting up to
      ``timeout`` seconds for the first one. ``missed`` counts the ones the ring dropped.

The plugin speaks the CLN plugin protocol over stdin/stdout (JSON-RPC 2.0 objects separated
by blank lines: ``getmanifest``, ``init``, hook and method calls) with the standard library
only, so lightningd can run it with any Python 3.11.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import json
import sys
from typing import Any, Final

METHOD: Final = "corridor-waitcustommsgs"
TYPES_OPTION: Final = "corridor-custommsg-types"
LSPS0_MESSAGE_TYPE: Final = 37913
# Messages kept for the adapter: LSPS0 is request/response with one request per peer in
# flight, so the adapter is far behind only when it is not reading at all.
RING_MAX: Final = 1024
# One answer carries at most this many messages (each up to 64 KiB of payload).
ANSWER_MESSAGES_MAX: Final = 64
WAIT_S_DEFAULT: Final = 30
WAIT_S_MAX: Final = 3600
# lightningd's requests are small; a line this long is not lightningd.
INPUT_BYTES_MAX: Final = 4 * 1024 * 1024
INVALID_PARAMS: Final = -32602


class Ring:
    def __init__(self) -> None:
        self.messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=RING_MAX)
        self.next_index = 1
        self.arrived = asyncio.Event()

    def add(self, peer_id: str, payload: str) -> None:
        self.messages.append({"index": self.next_index, "peer_id": peer_id, "payload": payload})
        self.next_index += 1
        self.arrived.set()
        self.arrived = asyncio.Event()

    def after(self, index: int) -> tuple[list[dict[str, Any]], int]:
        oldest = self.messages[0]["index"] if self.messages else self.next_index
        missed = max(0, oldest - index - 1)
        found = [m for m in self.messages if m["index"] > index][:ANSWER_MESSAGES_MAX]
        return found, missed


class Plugin:
    def __init__(self) -> None:
        self.ring = Ring()
        self.types: frozenset[int] = frozenset({LSPS0_MESSAGE_TYPE})
        self.out = sys.stdout
        self.tasks: set[asyncio.Task[None]] = set()

    def write(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n\n")
        self.out.flush()

    def manifest(self) -> dict[str, Any]:
        return {
            "options": [
                {
                    "name": TYPES_OPTION,
                    "type": "string",
                    "default": str(LSPS0_MESSAGE_TYPE),
                    "description": "Comma-separated custom message types to relay",
                }
            ],
            "rpcmethods": [
                {
                    "name": METHOD,
                    "usage": "[after_index] [timeout]",
                    "description": "Wait for custom messages after an index",
                }
            ],
            "hooks": [{"name": "custommsg", "filters": sorted(self.types)}],
            "subscriptions": [],
            "dynamic": False,
        }

    def handle(self, request: dict[str, Any]) -> None:
        method = request.get("method")
        params = request.get("params") or {}
        request_id = request.get("id")
        if method == "getmanifest":
            self.answer(request_id, self.manifest())
        elif method == "init":
            option = (params.get("options") or {}).get(TYPES_OPTION)
            if option:
                self.types = frozenset(int(t) for t in str(option).split(",") if t.strip())
            self.answer(request_id, {})
        elif method == "custommsg":
            payload = str(params.get("payload", ""))
            if len(payload) >= 4 and int(payload[:4], 16) in self.types:
                self.ring.add(str(params.get("peer_id", "")), payload)
            self.answer(request_id, {"result": "continue"})
        elif method == METHOD:
            task = asyncio.get_running_loop().create_task(self.wait(request_id, params))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif request_id is not None:
            self.fail(request_id, -32601, f"Unknown method {method}")

    async def wait(self, request_id: Any, params: Any) -> None:
        if isinstance(params, list):
            params = dict(zip(("after_index", "timeout"), params, strict=False))
        after = params.get("after_index")
        timeout = params.get("timeout", WAIT_S_DEFAULT)
        if after is None:
            self.answer(request_id, {"messages": [], "next_index": self.ring.next_index - 1})
            return
        if not isinstance(after, int) or after < 0:
            self.fail(request_id, INVALID_PARAMS, "after_index: should be an unsigned integer")
            return
        if not isinstance(timeout, int) or not 0 <= timeout <= WAIT_S_MAX:
            self.fail(request_id, INVALID_PARAMS, f"timeout: should be 0 to {WAIT_S_MAX}")
            return
        found, missed = self.ring.after(after)
        if not found and timeout:
            try:
                async with asyncio.timeout(timeout):
                    await self.ring.arrived.wait()
            except TimeoutError:
                pass
            found, missed = self.ring.after(after)
        next_index = found[-1]["index"] if found else max(after, self.ring.next_index - 1)
        self.answer(request_id, {"messages": found, "next_index": next_index, "missed": missed})

    def answer(self, request_id: Any, result: Any) -> None:
        self.write({"jsonrpc": "2.0", "id": request_id, "result": result})

    def fail(self, request_id: Any, code: int, message: str) -> None:
        self.write(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
        )


async def main() -> None:
    plugin = Plugin()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=INPUT_BYTES_MAX)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    while True:
        chunk = await reader.read(64 * 1024)
        if not chunk:
            return  # lightningd closed our stdin: it is shutting down
        buffer += text.decode(chunk)
        if len(buffer) > INPUT_BYTES_MAX:
            raise SystemExit("corridor-custommsg: oversized input from lightningd")
        while True:
            buffer = buffer.lstrip()
            if not buffer:
                break
            try:
                request, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                break  # incomplete: wait for more
            buffer = buffer[end:]
            plugin.handle(request)


if __name__ == "__main__":
    asyncio.run(main())
