"""The executor's JIT-channel part (ADR 0261), built once per executor that serves as LSP:
one held-HTLC book shared by the interception loop and the JIT orders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.bus.port import Delivery
from services.executor.jit_lsp import (
    HeldBook,
    JitInterception,
    JitNode,
    JitOrders,
    Refuse,
    is_jit_order,
)
from services.lightning.interceptor_port import InterceptorPort

if TYPE_CHECKING:
    from services.executor.worker import Executor


class JitLsp:
    def __init__(self, executor: Executor, node: JitNode) -> None:
        self._executor = executor
        self._node = node
        self._book = HeldBook()

    async def intercept(self) -> None:
        engine: Any = self._executor._engine
        assert engine is not None, "the engine client exists while run() runs"
        await JitInterception(
            self._node, engine, node_name=self._executor.node_name, book=self._book
        ).run()

    async def handle(self, msg: Delivery, refuse: Refuse) -> None:
        executor = self._executor
        assert executor._verifier is not None and executor._engine is not None
        await JitOrders(
            self._node, executor._engine, region=executor.region,
            node_name=executor.node_name, verifier=executor._verifier, book=self._book,
            heartbeat_s=executor._limits.heartbeat_s,
        ).handle(msg, refuse)  # fmt: skip


def jit_lsp_for(executor: Executor, node: Any) -> JitLsp:
    if not isinstance(node, InterceptorPort):
        raise ValueError(f"node {executor.node_name!r} cannot intercept HTLCs: not an LSP")
    jit_node: JitNode = node  # type: ignore[assignment]  # a NodePort that also intercepts
    return JitLsp(executor, jit_node)


__all__ = ["JitLsp", "is_jit_order", "jit_lsp_for"]
