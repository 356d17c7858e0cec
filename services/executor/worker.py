"""``Executor``: one region worker driving one node, started in-process or by the CLI.

Pull work orders, pay through the ``Payer``, and ack only after the outcome is committed.
While a payment is being decided, ``in_progress()`` heartbeats keep JetStream from handing the
order to another worker; a cancelled (killed) worker acks nothing and its orders come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from schemas.commands import RecordPaymentOutcome
from services.bus import subjects
from services.bus.jetstream import connect
from services.executor.consumer import bind_consumer, durable_created_at, ensure_dispatch_stream
from services.executor.engine_client import AttemptStatus, EngineClient
from services.executor.errors import BadWorkOrder, EngineUnavailable, OutcomeRefused
from services.executor.health_publisher import publish_health
from services.executor.limits import ExecutorLimits
from services.executor.payer import Disposition, Payer
from services.executor.work_order import WorkOrder, decode_work_order
from services.lightning.port import NodePort

log = structlog.get_logger("corridor.executor")

# JetStream's default duplicate window; only used when the executor creates the streams.
DUPLICATE_WINDOW_S_DEFAULT = 120


class Executor:
    """A worker for ``region`` paying through ``node`` (named ``node_name`` by the router)."""

    def __init__(
        self,
        *,
        nats_url: str,
        region: str,
        node_name: str,
        node: NodePort,
        executor_id: str,
        secret: bytes,
        limits: ExecutorLimits | None = None,
        duplicate_window_s: int = DUPLICATE_WINDOW_S_DEFAULT,
    ) -> None:
        self.region = region
        self.node_name = node_name
        self.executor_id = executor_id
        self._nats_url = nats_url
        self._node = node
        self._secret = secret
        self._limits = limits or ExecutorLimits()
        self._duplicate_window_s = duplicate_window_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.processed = 0  # deliveries decided (acked or handed back), for tests and metrics
        self._engine: EngineClient | None = None
        self._fresh_after: datetime.datetime | None = None
        self._payer = Payer(
            node,
            secret=secret,
            limits=self._limits,
            report=self._report,
            status_of=self._attempt_status,
        )

    def stop(self) -> None:
        """Stop taking work; running payments get ``stop_grace_s`` to reach a decision."""
        self._stopping.set()

    async def close_node(self) -> None:
        """Close the node adapter (the executor does not close it when ``run`` ends)."""
        await self._node.close()

    async def run(self) -> None:
        """Run until ``stop()`` or cancellation (a cancelled worker acks nothing)."""
        structlog.contextvars.bind_contextvars(
            region=self.region, node=self.node_name, executor_id=self.executor_id
        )
        nc = await connect(self._nats_url, name=f"corridor-executor-{self.executor_id}")
        health: asyncio.Task[None] | None = None
        try:
            js = nc.jetstream()
            await ensure_dispatch_stream(js, duplicate_window_s=self._duplicate_window_s)
            sub = await bind_consumer(js, self.region, self.node_name, self._limits)
            self._fresh_after = await durable_created_at(
                js, self.region, self.node_name
            ) + datetime.timedelta(seconds=self._limits.fresh_margin_s)
            health = asyncio.create_task(self._health(nc), name="executor-health")
            self._engine = EngineClient(nc, executor_id=self.executor_id, limits=self._limits)
            log.info("executor_started")
            self.ready.set()
            await self._pull(sub)
            await self._drain()
        finally:
            for task in [*self._tasks, *([health] if health else [])]:
                task.cancel()
            await asyncio.gather(
                *self._tasks, *([health] if health else []), return_exceptions=True
            )
            with contextlib.suppress(Exception):
                await nc.close()
            log.info("executor_stopped")

    async def _attempt_status(self, intent_id: str) -> AttemptStatus:
        assert self._engine is not None, "the engine client exists while run() runs"
        return await self._engine.attempt_status(intent_id)

    async def _report(self, order: WorkOrder, outcome: RecordPaymentOutcome) -> None:
        assert self._engine is not None, "the engine client exists while run() runs"
        await self._engine.record(
            outcome, causation_id=order.event_id, correlation_id=order.correlation_id
        )

    async def _health(self, nc: Client) -> None:
        await publish_health(
            nc,
            self._node,
            region=self.region,
            node_name=self.node_name,
            executor_id=self.executor_id,
            limits=self._limits,
        )

    async def _pull(self, sub: JetStreamContext.PullSubscription) -> None:
        limits = self._limits
        backlog = True  # whether orders were waiting behind the last one fetched
        while not self._stopping.is_set():
            free = limits.payments_in_flight_max - len(self._tasks)
            if free <= 0:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            # A trickle of orders is pulled one at a time: a batch fetch first probes for
            # what is there (a request and a "no messages" reply) and then waits with a
            # second request, three messages per order instead of one.
            batch = min(free, limits.fetch_batch_max) if backlog else 1
            try:
                msgs = await sub.fetch(batch, timeout=limits.fetch_wait_s)
            except TimeoutError:  # nats-py raises both its own and asyncio's: no work yet
                backlog = False
                continue
            except nats.errors.Error as exc:
                # Reconnecting or a server hiccup: the durable keeps our place; look again.
                log.warning("work_fetch_failed", error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(limits.fetch_wait_s)
                continue
            backlog = bool(msgs) and (msgs[-1].metadata.num_pending or 0) > 0
            for msg in msgs:
                task = asyncio.create_task(self._handle(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._limits.stop_grace_s)
            for task in pending:
                log.warning("executor_payment_abandoned_at_stop", task=task.get_name())

    async def _handle(self, msg: Msg) -> None:
        structlog.contextvars.unbind_contextvars("intent_id", "attempt", "payment_hash")
        try:
            order = decode_work_order(msg.data, bytes_max=self._limits.work_order_bytes_max)
        except BadWorkOrder as exc:
            # A poison message can never become a payment; keep it out of the way for good.
            log.error("work_order_rejected", detail=str(exc)[:300])
            await msg.term()
            return
        structlog.contextvars.bind_contextvars(
            intent_id=order.intent_id, attempt=order.attempt, correlation_id=order.correlation_id
        )
        if order.region != self.region or order.node != self.node_name:
            # Another node of this region (its own durable sees this order too).
            log.debug("work_order_for_another_node", order_node=order.node)
            await msg.ack()
            return
        await self._decide(msg, order)

    def _first_sight(self, msg: Msg, delivery: int) -> bool:
        """True if no worker can have seen this order before (ADR 0203): its first delivery,
        not a relay replay, and stored after this node's durable was created."""
        if delivery != 1 or self._fresh_after is None:
            return False
        if (msg.headers or {}).get(subjects.HDR_REPLAYED):
            return False
        stored_at = msg.metadata.timestamp
        return stored_at is not None and stored_at > self._fresh_after

    async def _decide(self, msg: Msg, order: WorkOrder) -> None:
        delivery = msg.metadata.num_delivered or 1
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            disposition = await self._payer.process(
                order, delivery=delivery, first_sight=self._first_sight(msg, delivery)
            )
        except OutcomeRefused as exc:
            log.error("outcome_refused", code=exc.error_code, detail=str(exc)[:300])
            disposition = Disposition.TERM
        except EngineUnavailable as exc:
            log.warning("engine_unavailable", detail=str(exc)[:200])
            disposition = Disposition.RETRY
        except Exception:
            log.exception("work_order_crashed")
            disposition = Disposition.RETRY
        finally:
            heartbeat.cancel()
        self.processed += 1
        await self._settle_message(msg, disposition, delivery)

    async def _settle_message(self, msg: Msg, disposition: Disposition, delivery: int) -> None:
        try:
            if disposition is Disposition.DONE:
                await msg.ack()
            elif disposition is Disposition.RETRY:
                await msg.nak(delay=self._limits.redelivery_delay_s(delivery))
            else:
                await msg.term()
        except Exception as exc:
            # A lost ack only means a redelivery, which is answered from the node's record.
            log.warning("work_order_ack_failed", error=type(exc).__name__, detail=str(exc)[:200])

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._limits.heartbeat_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()
