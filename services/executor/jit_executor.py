"""The executor's JIT-channel part (ADR 0261), built once per executor that serves as LSP:
the LSPS2 server on the node's custom messages, the interception loop, and the JIT orders,
sharing one held-HTLC book."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from services.bus.port import Delivery
from services.domain.jit_channels.fees import FeeMenuEntry
from services.engine.ids import jit_sale_id_for, jit_scid_for
from services.engine.jit_planning import DEFAULT_JIT_POLICY
from services.executor.jit_lsp import (
    HeldBook,
    JitInterception,
    JitNode,
    JitOrders,
    Refuse,
    is_jit_order,
)
from services.lightning.interceptor_port import InterceptorPort
from services.lightning.port import NodeError
from services.lsps import lsps0
from services.lsps.lsps2_server import DEFAULT_MENU, Lsps2Server, promise_key
from services.lsps.server import LspsDispatcher

log = structlog.get_logger("corridor.executor.jit")
# After the node's message stream broke: wait this long before subscribing again.
LSPS_RECONNECT_S = 1.0

if TYPE_CHECKING:
    from services.executor.worker import Executor


class JitLsp:
    def __init__(
        self, executor: Executor, node: JitNode, menu: Sequence[FeeMenuEntry] = DEFAULT_MENU
    ) -> None:
        self._executor = executor
        self._node = node
        self._book = HeldBook()
        self._menu = tuple(menu)

    async def intercept(self) -> None:
        """The interception loop and the LSPS2 server, until cancelled."""
        engine: Any = self._executor._engine
        assert engine is not None, "the engine client exists while run() runs"
        interception = JitInterception(
            self._node, engine, node_name=self._executor.node_name, book=self._book
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(interception.run())
            group.create_task(self._serve_lsps2(engine))

    async def _serve_lsps2(self, engine: Any) -> None:
        executor = self._executor

        async def sell(command: Any) -> Any:
            scid = jit_scid_for(command.node, command.client_pubkey, command.request_id)
            sale_id = jit_sale_id_for(command.node, scid)
            return await engine.record_jit(
                command, causation_id=f"{sale_id}/sell", correlation_id=sale_id
            )

        server = Lsps2Server(
            region=executor.region, node_name=executor.node_name,
            secret=promise_key(executor._secret), sell=sell,
            now_ms=lambda: int(time.time() * 1000),
            cltv_expiry_delta=DEFAULT_JIT_POLICY.cltv_expiry_delta, menu=self._menu,
        )  # fmt: skip
        dispatcher = LspsDispatcher(server.methods())
        while True:
            try:
                await serve_requests(self._node, dispatcher)
            except NodeError as exc:
                log.warning("lsps2_server_reconnect", detail=str(exc)[:200])
            await asyncio.sleep(LSPS_RECONNECT_S)

    async def handle(self, msg: Delivery, refuse: Refuse) -> None:
        executor = self._executor
        assert executor._verifier is not None and executor._engine is not None
        await JitOrders(
            self._node, executor._engine, region=executor.region,
            node_name=executor.node_name, verifier=executor._verifier, book=self._book,
            heartbeat_s=executor._limits.heartbeat_s,
        ).handle(msg, refuse)  # fmt: skip


async def serve_requests(node: JitNode, dispatcher: LspsDispatcher) -> None:
    """``services.lsps.server.serve`` for a node that is also a client of other LSPs: an
    LSPS0 message that is not a request (an answer to our own client) is left to that
    client, not answered with a parse error."""
    async for message in node.custom_messages():
        if message.message_type != lsps0.LSPS0_MESSAGE_TYPE:
            continue
        with contextlib.suppress(lsps0.BadMessage):
            body = lsps0.parse_object(message.data)
            if "method" not in body:
                continue
        reply = await dispatcher.handle(message.peer_pubkey, message.data)
        with contextlib.suppress(NodeError):  # the client went away: bLIP-50 lets it be
            await node.send_custom_message(
                peer_pubkey=message.peer_pubkey,
                message_type=lsps0.LSPS0_MESSAGE_TYPE,
                data=reply,
            )


def jit_lsp_for(
    executor: Executor, node: Any, menu: Sequence[FeeMenuEntry] = DEFAULT_MENU
) -> JitLsp:
    if not isinstance(node, InterceptorPort):
        raise ValueError(f"node {executor.node_name!r} cannot intercept HTLCs: not an LSP")
    jit_node: JitNode = node  # type: ignore[assignment]  # a NodePort that also intercepts
    return JitLsp(executor, jit_node, menu)


__all__ = ["JitLsp", "is_jit_order", "jit_lsp_for"]
