"""A simulated lightningd's plugin host: runs CLN plugins the way lightningd does (ADR 0250).

Each plugin is a child process speaking JSON-RPC 2.0 over its stdin/stdout, objects separated
by blank lines (doc/developers-guide/plugin-development). The host sends ``getmanifest``, then
``init`` with the options and the configuration (``lightning-dir``, ``rpc-file``...), then
calls the plugin's hooks and forwards calls of the RPC methods it registered. Hooks are
chained, as lightningd chains them: plugins in load order until one answers other than
``continue``; a hook registered with ``filters`` (since v25.12) is called only for those
message types.

Which hooks exist and how they are checked is a registry (``HOOKS``): the node server calls
``call_hook(name, params)`` and a test hands in ``check`` to validate each request and
response against ``cln/schemas/hook/<name>.json``. A plugin that breaks the protocol (an
answer that is not JSON-RPC, a result the hook does not allow) is recorded in ``errors``:
real lightningd would kill the plugin or itself, a test should fail.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import json
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from services.sim.jsonrpc import RpcFailure

log = structlog.get_logger(__name__)

# lightningd waits this long for getmanifest and init (its --plugin-timeout default is 60 s).
STARTUP_TIMEOUT_S: Final = 60.0
# A hook call that takes longer holds one peer's messages; lightningd waits forever, a
# simulation should not.
HOOK_TIMEOUT_S: Final = 60.0
# A plugin's answer larger than this is broken: the biggest honest one is 64 custom messages.
PLUGIN_OUTPUT_BYTES_MAX: Final = 16 * 1024 * 1024
# The hook calls and answers kept for tests to check against the hook schemas.
HOOK_LOG_MAX: Final = 1024
PLUGINS_MAX: Final = 16

HookCheck = Callable[[str, str, Any], list[str]]  # (hook, "request"/"response", doc) -> errors


@dataclass(frozen=True)
class HookSpec:
    """What lightningd accepts from a plugin for one hook: the ``result`` values, and which
    of them lets the chain go on to the next plugin."""

    results: frozenset[str]
    chain_on: str = "continue"


# Hooks this host can call. Branches that add a hook add a row (e.g. ``htlc_accepted``).
HOOKS: dict[str, HookSpec] = {
    # doc/schemas/hook/custommsg.json: must always be "continue".
    "custommsg": HookSpec(results=frozenset({"continue"})),
    # doc/schemas/hook/htlc_accepted.json: continue (chains on), fail or resolve (ADR 0260).
    "htlc_accepted": HookSpec(results=frozenset({"continue", "fail", "resolve"})),
}


@dataclass
class _Plugin:
    name: str
    process: asyncio.subprocess.Process
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    hooks: dict[str, frozenset[int] | None] = field(default_factory=dict)  # name -> filters
    methods: set[str] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None

    async def call(self, method: str, params: Any, *, timeout_s: float | None) -> dict[str, Any]:
        """The plugin's whole JSON-RPC answer (``result`` or ``error``)."""
        request_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        line = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line.encode() + b"\n\n")
            await self.process.stdin.drain()
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self.pending.pop(request_id, None)


class PluginHost:
    def __init__(
        self,
        *,
        lightning_dir: str,
        rpc_file: str,
        network: str,
        check: HookCheck | None = None,
    ) -> None:
        self._configuration = {
            "lightning-dir": lightning_dir,
            "rpc-file": rpc_file,
            "startup": True,
            "network": network,
            "feature_set": {"init": "", "node": "", "channel": "", "invoice": ""},
        }
        self._check = check
        self._plugins: list[_Plugin] = []
        self.hook_log: deque[tuple[str, dict[str, Any], Any]] = deque(maxlen=HOOK_LOG_MAX)
        self.errors: list[str] = []

    async def start(self, command: Sequence[str], *, options: dict[str, Any] | None = None) -> None:
        """Spawn one plugin, read its manifest and initialise it; raises ``RuntimeError`` if
        it does not answer as a plugin."""
        assert len(self._plugins) < PLUGINS_MAX, "too many plugins"
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        plugin = _Plugin(name=command[-1], process=process)
        plugin.reader = asyncio.get_running_loop().create_task(self._read(plugin))
        self._plugins.append(plugin)
        try:
            manifest = self._result(
                await plugin.call(
                    "getmanifest", {"allow-deprecated-apis": False}, timeout_s=STARTUP_TIMEOUT_S
                )
            )
            for hook in manifest.get("hooks", []):
                name = hook if isinstance(hook, str) else hook["name"]
                if name not in HOOKS:
                    raise RuntimeError(f"plugin {plugin.name} registers unknown hook {name}")
                filters = None if isinstance(hook, str) else hook.get("filters")
                plugin.hooks[name] = None if filters is None else frozenset(filters)
            plugin.methods = {method["name"] for method in manifest.get("rpcmethods", [])}
            self._result(
                await plugin.call(
                    "init",
                    {"options": options or {}, "configuration": self._configuration},
                    timeout_s=STARTUP_TIMEOUT_S,
                )
            )
        except (RpcFailure, TimeoutError, KeyError, TypeError) as exc:
            raise RuntimeError(f"plugin {plugin.name} failed to start: {exc}") from exc
        log.info("sim_cln_plugin_started", plugin=plugin.name, hooks=sorted(plugin.hooks))

    def has_hook(self, name: str) -> bool:
        return any(name in plugin.hooks for plugin in self._plugins)

    def has_method(self, name: str) -> bool:
        return any(name in plugin.methods for plugin in self._plugins)

    async def call_hook(
        self, name: str, params: dict[str, Any], *, message_type: int | None = None
    ) -> dict[str, Any] | None:
        """Call ``name`` on each registered plugin in load order until one answers other than
        the spec's chaining result; that answer (or the last one). None if nobody registered."""
        spec = HOOKS[name]
        self._checked(name, "request", params)
        answer: dict[str, Any] | None = None
        for plugin in self._plugins:
            if name not in plugin.hooks:
                continue
            filters = plugin.hooks[name]
            if filters is not None and message_type is not None and message_type not in filters:
                continue
            try:
                answer = self._result(await plugin.call(name, params, timeout_s=HOOK_TIMEOUT_S))
            except (RpcFailure, TimeoutError) as exc:
                self.errors.append(f"{plugin.name} {name}: {exc!r}")
                return None
            self.hook_log.append((name, params, answer))
            self._checked(name, "response", answer)
            result = answer.get("result") if isinstance(answer, dict) else None
            if result not in spec.results:
                self.errors.append(f"{plugin.name} {name}: invalid result {result!r}")
                return None
            if result != spec.chain_on:
                return answer
        return answer

    async def call_method(self, name: str, params: Any) -> Any:
        """Forward an RPC call to the plugin that registered ``name``; its error passes
        through as lightningd passes it."""
        for plugin in self._plugins:
            if name in plugin.methods:
                return self._result(await plugin.call(name, params, timeout_s=None))
        raise KeyError(name)

    async def stop(self) -> None:
        for plugin in self._plugins:
            if plugin.process.stdin is not None:
                plugin.process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                plugin.process.terminate()
            await plugin.process.wait()
            if plugin.reader is not None:
                plugin.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await plugin.reader
        self._plugins.clear()

    def _checked(self, name: str, part: str, document: Any) -> None:
        if self._check is not None:
            self.errors += [
                f"{name} {part}: {error}" for error in self._check(name, part, document)
            ]

    @staticmethod
    def _result(answer: dict[str, Any]) -> Any:
        if "error" in answer:
            error = answer["error"]
            raise RpcFailure(
                int(error.get("code", -1)), str(error.get("message", "")), error.get("data")
            )
        return answer["result"]

    async def _read(self, plugin: _Plugin) -> None:
        """Route the plugin's answers to their calls; notifications (``log``) are logged."""
        assert plugin.process.stdout is not None
        decoder = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")()
        buffer = ""
        while True:
            chunk = await plugin.process.stdout.read(64 * 1024)
            if not chunk:
                break
            buffer += text.decode(chunk)
            if len(buffer) > PLUGIN_OUTPUT_BYTES_MAX:
                self.errors.append(f"{plugin.name}: oversized output")
                break
            while True:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                try:
                    message, end = decoder.raw_decode(buffer)
                except json.JSONDecodeError:
                    break
                buffer = buffer[end:]
                self._route(plugin, message)
        for future in plugin.pending.values():
            if not future.done():
                future.set_exception(RpcFailure(-1, f"plugin {plugin.name} exited"))

    def _route(self, plugin: _Plugin, message: Any) -> None:
        if not isinstance(message, dict):
            self.errors.append(f"{plugin.name}: not a JSON-RPC object")
            return
        if "method" in message:
            log.info("sim_cln_plugin_notification", plugin=plugin.name, method=message["method"])
            return
        future = plugin.pending.get(message.get("id"))  # type: ignore[arg-type]
        if future is None or future.done():
            self.errors.append(f"{plugin.name}: answer to unknown id {message.get('id')!r}")
            return
        future.set_result(message)


def corridor_cln_plugins() -> tuple[tuple[str, ...], ...]:
    """The plugin commands of one of our CLN nodes: Corridor's custom-message relay and its
    HTLC interception for JIT channels (ADR 0260)."""
    from services.lightning.cln_plugin import CUSTOMMSG_PLUGIN, HTLC_PLUGIN

    return ((sys.executable, str(CUSTOMMSG_PLUGIN)), (sys.executable, str(HTLC_PLUGIN)))
