#!/usr/bin/env python3
"""Corridor's Core Lightning plugin for HTLC interception (ADR 0260): the ``htlc_accepted``
hook (doc/schemas/hook/htlc_accepted.json), for our JIT channels (bLIP-52).

An HTLC whose requested next channel (``onion.short_channel_id``) lies in the scid-alias
range Corridor sells JIT channels from (block 16 000 000 and up) is held: the hook call stays
unanswered until Corridor resolves it. Every other HTLC continues at once. lightningd replays
the hook at startup for HTLCs without a verdict, so a restart holds them again. Two methods,
forwarded to the plugin by lightningd:

    corridor-waitheldhtlcs [after_index] [timeout]
      the held HTLCs with a higher index (all still held for 0, the default), waiting up to
      ``timeout`` seconds for one; each with its ``key`` (``<scid>/<htlc id>``).
    corridor-resolvehtlc key action [forward_msat] [extra_fee_msat] [forward_to]
                                    [payment_key] [failure_message]
      answers the held hook: ``continue`` (the onion payload's amt_to_forward replaced by
      ``forward_msat``, ``extra_tlvs`` carrying bLIP-25's extra_fee, type 65537),
      ``fail`` (``failure_message`` hex) or ``resolve`` (``payment_key``).

The standard library only, so lightningd can run it with any Python 3.11.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import sys
from typing import Any, Final

WAIT_METHOD: Final = "corridor-waitheldhtlcs"
RESOLVE_METHOD: Final = "corridor-resolvehtlc"
JIT_SCID_BLOCK_MIN: Final = 16_000_000
HELD_MAX: Final = 10_000  # more held at once is a flood: the rest continue (and fail)
WAIT_S_DEFAULT: Final = 30
WAIT_S_MAX: Final = 3600
INPUT_BYTES_MAX: Final = 4 * 1024 * 1024
INVALID_PARAMS: Final = -32602
AMT_TO_FORWARD: Final = 2  # BOLT 4 payload TLV
EXTRA_FEE_TLV: Final = 65537  # bLIP-25, used by bLIP-52


def _bigsize(value: int) -> bytes:
    if value < 0xFD:
        return value.to_bytes(1, "big")
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


def _read_bigsize(data: bytes, at: int) -> tuple[int, int]:
    first = data[at]
    if first < 0xFD:
        return first, at + 1
    width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    return int.from_bytes(data[at + 1 : at + 1 + width], "big"), at + 1 + width


def _tlvs(data: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(data):
        kind, at = _read_bigsize(data, at)
        length, at = _read_bigsize(data, at)
        out.append((kind, data[at : at + length]))
        at += length
    return out


def _tu64(value: int) -> bytes:
    return value.to_bytes(8, "big").lstrip(b"\x00")


def replace_amount(payload_hex: str, forward_msat: int) -> str:
    """The TLV payload (no length prefix) with amt_to_forward set to ``forward_msat``."""
    records = _tlvs(bytes.fromhex(payload_hex))
    records = [(k, _tu64(forward_msat) if k == AMT_TO_FORWARD else v) for k, v in records]
    return b"".join(_bigsize(k) + _bigsize(len(v)) + v for k, v in records).hex()


def extra_fee_tlvs(extra_fee_msat: int) -> str:
    return (_bigsize(EXTRA_FEE_TLV) + _bigsize(8) + extra_fee_msat.to_bytes(8, "big")).hex()


def is_jit_scid(scid: Any) -> bool:
    block = str(scid).split("x", 1)[0]
    return block.isdigit() and int(block) >= JIT_SCID_BLOCK_MIN


class Plugin:
    def __init__(self) -> None:
        self.out = sys.stdout
        self.held: dict[str, dict[str, Any]] = {}  # key -> the held HTLC as listed
        self.hook_ids: dict[str, Any] = {}  # key -> lightningd's hook request id
        self.payloads: dict[str, str] = {}
        self.next_index = 1
        self.arrived = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def write(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n\n")
        self.out.flush()

    def manifest(self) -> dict[str, Any]:
        return {
            "options": [],
            "rpcmethods": [
                {
                    "name": WAIT_METHOD,
                    "usage": "[after_index] [timeout]",
                    "description": "Wait for HTLCs held for Corridor after an index",
                },
                {
                    "name": RESOLVE_METHOD,
                    "usage": "key action",
                    "description": "Continue, fail or resolve a held HTLC",
                },
            ],
            "hooks": [{"name": "htlc_accepted"}],
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
            self.answer(request_id, {})
        elif method == "htlc_accepted":
            self.accepted(request_id, params)
        elif method == WAIT_METHOD:
            task = asyncio.get_running_loop().create_task(self.wait(request_id, params))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif method == RESOLVE_METHOD:
            self.resolve(request_id, params)
        elif request_id is not None:
            self.fail(request_id, -32601, f"Unknown method {method}")

    def accepted(self, request_id: Any, params: dict[str, Any]) -> None:
        onion, htlc = params.get("onion") or {}, params.get("htlc") or {}
        scid = onion.get("short_channel_id")
        if not is_jit_scid(scid) or len(self.held) >= HELD_MAX:
            self.answer(request_id, {"result": "continue"})
            return
        key = f"{htlc.get('short_channel_id')}/{htlc.get('id')}"
        if key in self.hook_ids:  # a replay of an HTLC we hold: answer the newest call
            self.hook_ids[key] = request_id
            return
        self.hook_ids[key] = request_id
        self.payloads[key] = str(onion.get("payload", ""))
        self.held[key] = {
            "index": self.next_index, "key": key,
            "incoming_channel_id": htlc.get("short_channel_id"), "htlc_id": htlc.get("id"),
            "payment_hash": htlc.get("payment_hash"), "amount_msat": htlc.get("amount_msat"),
            "forward_msat": onion.get("forward_msat"), "short_channel_id": scid,
            "cltv_expiry": htlc.get("cltv_expiry"),
            "outgoing_cltv_value": onion.get("outgoing_cltv_value"),
        }  # fmt: skip
        self.next_index += 1
        self.arrived.set()
        self.arrived = asyncio.Event()

    async def wait(self, request_id: Any, params: Any) -> None:
        if isinstance(params, list):
            params = dict(zip(("after_index", "timeout"), params, strict=False))
        after = params.get("after_index", 0)
        timeout = params.get("timeout", WAIT_S_DEFAULT)
        if not isinstance(after, int) or after < 0:
            self.fail(request_id, INVALID_PARAMS, "after_index: should be an unsigned integer")
            return
        if not isinstance(timeout, int) or not 0 <= timeout <= WAIT_S_MAX:
            self.fail(request_id, INVALID_PARAMS, f"timeout: should be 0 to {WAIT_S_MAX}")
            return
        found = [h for h in self.held.values() if h["index"] > after]
        if not found and timeout:
            try:
                async with asyncio.timeout(timeout):
                    await self.arrived.wait()
            except TimeoutError:
                pass
            found = [h for h in self.held.values() if h["index"] > after]
        found.sort(key=lambda h: h["index"])
        next_index = found[-1]["index"] if found else max(after, self.next_index - 1)
        self.answer(request_id, {"htlcs": found, "next_index": next_index})

    def resolve(self, request_id: Any, params: Any) -> None:
        if isinstance(params, list):
            names = ("key", "action", "forward_msat", "extra_fee_msat", "forward_to",
                     "payment_key", "failure_message")  # fmt: skip
            params = dict(zip(names, params, strict=False))
        key, action = params.get("key"), params.get("action")
        if key not in self.hook_ids:
            self.fail(request_id, INVALID_PARAMS, f"key: no held htlc {key}")
            return
        if action == "continue":
            verdict: dict[str, Any] = {"result": "continue"}
            forward_msat = params.get("forward_msat")
            if forward_msat is not None:
                verdict["payload"] = replace_amount(self.payloads[key], int(forward_msat))
            if params.get("extra_fee_msat"):
                verdict["extra_tlvs"] = extra_fee_tlvs(int(params["extra_fee_msat"]))
            if params.get("forward_to"):
                verdict["forward_to"] = str(params["forward_to"])
        elif action == "fail":
            verdict = {"result": "fail", "failure_message": str(params.get("failure_message"))}
        elif action == "resolve":
            verdict = {"result": "resolve", "payment_key": str(params.get("payment_key"))}
        else:
            self.fail(request_id, INVALID_PARAMS, "action: continue, fail or resolve")
            return
        hook_id = self.hook_ids.pop(key)
        self.held.pop(key, None)
        self.payloads.pop(key, None)
        self.answer(hook_id, verdict)
        self.answer(request_id, {"key": key, "result": verdict["result"]})

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
            raise SystemExit("corridor-htlc: oversized input from lightningd")
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
