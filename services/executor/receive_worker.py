"""The executor's side of receive intents (ADR 0220, 0221): a receive order from the dispatch
stream is decoded, its signature checked, and handed to the ``Receiver``; the order is acked
once the invoice's issue is committed. The node's settlement follower and expiry watch run
beside the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from services.bus.port import Delivery
from services.executor.engine_client import EngineClient
from services.executor.errors import BadWorkOrder, EngineUnavailable, OutcomeRefused
from services.executor.expiry_watch import ExpiryWatch
from services.executor.invoice_follower import InvoiceFollower
from services.executor.payer import Disposition
from services.executor.receive_order import decode_receive_order
from services.executor.receiver import Receiver
from services.lightning.port import NodePort
from services.signing.port import SigningError
from services.signing.receive_orders import verify_receive_order

if TYPE_CHECKING:
    from services.executor.worker import Executor

log = structlog.get_logger("corridor.executor")


class ReceiveOrders:
    def __init__(
        self, executor: Executor, node: NodePort, *, secret: bytes, now_s: Callable[[], float]
    ) -> None:
        self._executor = executor
        self.receiver = Receiver(
            node, secret=secret, region=executor.region, node_name=executor.node_name,
            engine=self._engine,
        )  # fmt: skip
        self.follower = InvoiceFollower(
            node, secret=secret, region=executor.region, node_name=executor.node_name,
            engine=self._engine,
        )  # fmt: skip
        self.expiry = ExpiryWatch(
            node, region=executor.region, node_name=executor.node_name, engine=self._engine,
            now_s=now_s,
        )  # fmt: skip

    def _engine(self) -> EngineClient:
        engine = self._executor._engine
        assert engine is not None, "the engine client exists while run() runs"
        return engine

    def start_watchers(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.follower.run(), name="executor-invoice-follower"),
            asyncio.create_task(self.expiry.run(), name="executor-expiry-watch"),
        ]

    async def handle(self, msg: Delivery) -> None:
        executor = self._executor
        limits = executor._limits
        delivery = msg.num_delivered
        try:
            order = decode_receive_order(
                msg.data, bytes_max=limits.work_order_bytes_max, headers=msg.headers
            )
        except BadWorkOrder as exc:
            await executor._refuse(msg, exc.code, str(exc))
            return
        structlog.contextvars.bind_contextvars(intent_id=order.intent_id)
        assert executor._verifier is not None, "run() does not start without a verifier"
        try:
            verify_receive_order(
                executor._verifier, intent_id=order.intent_id, event_id=order.event_id,
                order=order.dispatched,
            )  # fmt: skip
        except SigningError as exc:
            await executor._refuse(msg, exc.code, str(exc))
            return
        target = (order.dispatched.region, order.dispatched.node)
        if target != (executor.region, executor.node_name):  # another node of this region
            await msg.ack()
            return
        heartbeat = asyncio.create_task(executor._heartbeat(msg))
        try:
            disposition = await self.receiver.process(order)
        except (EngineUnavailable, OutcomeRefused) as exc:
            log.warning("receive_report_retry", error=type(exc).__name__, detail=str(exc)[:200])
            await executor._settle_message(msg, Disposition.RETRY, delivery)
            return
        except Exception:
            log.exception("receive_order_crashed")
            await executor._settle_message(msg, Disposition.RETRY, delivery)
            return
        finally:
            heartbeat.cancel()
        executor.processed += 1
        await executor._settle_message(msg, disposition, delivery)
