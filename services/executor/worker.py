"""``Executor``: one region worker driving one node, started in-process or by the CLI.

Pull work orders, verify the engine's signature on each (ADR 0063), pay through the ``Payer``,
and ack only after the outcome is committed. While a payment is being decided,
``in_progress()`` heartbeats keep JetStream from handing the order to another worker; a
cancelled (killed) worker acks nothing and its orders come back. An order that can never be
paid (malformed, unsigned, forged, for an intent the engine does not have) is terminated and
recorded on ``corridor.dlq.v1.dispatch.<region>.<node>`` for the operator. Any other refusal
from the engine holds the order instead: recorded there too, and retried (ADR 0072).

Everything it asks of NATS goes through the bus port (ADR 0092, 0098): the dispatch stream
created if absent, the durable, deliveries, health reports, the engine client's requests,
dead-letter records, and the check for a lost durable. By default ``run`` connects to
``nats_url`` and wraps the connection in ``NatsBus``; given a ``bus`` (the in-memory twin of
a simulation, or a connection its owner shares) it runs on that one, opens nothing and
closes nothing: the code path is the same, only the construction differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Final

import structlog

from schemas.channel_messages import RecordChannelOpReport
from schemas.commands import RecordPaymentOutcome
from schemas.lsp_messages import RecordLspOrderReport
from services import tracing
from services.bus import subjects
from services.bus.jetstream import connect
from services.bus.nats_adapter import NatsBus
from services.bus.port import Bus, BusError, Delivery, PullConsumer, Subscription
from services.cancellation import cancel_and_wait
from services.domain.jit_channels.fees import FeeMenuEntry
from services.executor.channel_worker import ChannelOps, is_channel_order
from services.executor.consumer import bind_consumer, durable_lost, ensure_dispatch_stream
from services.executor.engine_client import AttemptStatus, EngineClient
from services.executor.errors import (
    BadWorkOrder,
    EngineUnavailable,
    OutcomeRefused,
    WorkOrderTooNew,
)
from services.executor.health_publisher import publish_health
from services.executor.jit_executor import is_jit_order, jit_lsp_for
from services.executor.limits import ExecutorLimits
from services.executor.lsp_info import serve_lsp_info
from services.executor.lsp_worker import LspOrders, is_lsp_order
from services.executor.payer import Disposition, Payer
from services.executor.rebalance_worker import (
    RebalanceWorkOrder,
    is_rebalance_order,
    rebalance_work_order,
    with_own_invoice,
)
from services.executor.receive_order import is_receive_order
from services.executor.receive_worker import ReceiveOrders
from services.executor.work_order import WorkOrder, decode_work_order
from services.lightning.port import NodePort
from services.lsps.lsps2_server import DEFAULT_MENU
from services.metrics.series import EXECUTOR_PAYMENTS
from services.signing.orders import verify_order
from services.signing.port import KeyFileError, SigningError, Verifier

log = structlog.get_logger("corridor.executor")

# JetStream's default duplicate window; only used when the executor creates the streams.
DUPLICATE_WINDOW_S_DEFAULT = 120
# Refused work orders, one subject per node, in the dead-letter stream (CORRIDOR_DLQ takes
# corridor.dlq.v1.>). The record is the order as it arrived, with the refusal's code and
# message in the Corridor-Error-* headers; nothing in it reaches the log or an intent.
REFUSED_ORDERS_PREFIX: Final = subjects.DLQ_DISPATCH_PREFIX
# On an exception item for an order the executor keeps retrying (ADR 0072), not terminated.
HDR_ORDER_HELD: Final = "Corridor-Order-Held"
# Header values are one line; a refusal message longer than this is cut.
REFUSAL_MESSAGE_CHARS_MAX: Final = 500


def refused_orders_subject(region: str, node: str) -> str:
    return f"{REFUSED_ORDERS_PREFIX}.{region}.{node}"


class Executor:
    """A worker for ``region`` paying through ``node`` (named ``node_name`` by the router)."""

    def __init__(
        self,
        *,
        nats_url: str | None = None,
        region: str,
        node_name: str,
        node: NodePort,
        executor_id: str,
        secret: bytes,
        limits: ExecutorLimits | None = None,
        duplicate_window_s: int = DUPLICATE_WINDOW_S_DEFAULT,
        creds: Path | None = None,
        verifier: Verifier | None = None,
        bus: Bus | None = None,
        jitter: random.Random | None = None,
        follow_invoices: bool = True,
        now_s: Callable[[], float] = time.time,
        jit_lsp: bool = False,
        jit_menu: Sequence[FeeMenuEntry] = DEFAULT_MENU,
    ) -> None:
        """``verifier``: the engine's public keys (``services.signing.file_keys.FileKeyring``).
        Required to run: without it no order can be trusted, and ``run`` refuses to start.

        ``bus``: run on this bus instead of connecting to ``nats_url`` (then ``nats_url`` and
        ``creds`` are unused); its owner closes it. One of the two is required.

        ``jitter``: draws held orders' back-off (a seeded one in the simulation).

        ``follow_invoices``: run the node's settlement follower and expiry watch (ADR 0221);
        without them receives stay ``issued``. ``now_s``: the wall clock the expiry watch
        compares invoices' expiry with (the simulation's virtual one)."""
        if bus is None and not nats_url:
            raise ValueError("an executor needs a nats_url to connect to, or a bus")
        self.region = region
        self.node_name = node_name
        self.executor_id = executor_id
        self._nats_url = nats_url
        # The node's executor credential (default CORRIDOR_CREDS): it may take this node's
        # work orders and report its outcomes and health, nothing else (ADR 0060).
        self._creds = creds
        self._node = node
        self._secret = secret
        self._limits = limits or ExecutorLimits()
        self._duplicate_window_s = duplicate_window_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.processed = 0  # deliveries decided (acked or handed back), for tests and metrics
        self._verifier = verifier
        self._engine: EngineClient | None = None
        # Jitter for held orders' back-off only: no decision depends on it.
        self._jitter = jitter or random.Random()
        self._given_bus = bus
        self._bus: Bus | None = None
        self._payer = Payer(
            node,
            secret=secret,
            limits=self._limits,
            report=self._report,
            status_of=self._attempt_status,
        )
        # Receive intents (ADR 0220, 0221): their orders, and the node's settlements.
        self._receives = ReceiveOrders(self, node, secret=secret, now_s=now_s)
        self._lsp_orders: LspOrders | None = None  # ADR 0252
        self._follow_invoices = follow_invoices
        # The LSP side of JIT channels (ADR 0261): intercept, and carry out JIT orders.
        self._jit = jit_lsp_for(self, node, jit_menu) if jit_lsp else None

    def stop(self) -> None:
        """Stop taking work; running payments get ``stop_grace_s`` to reach a decision."""
        self._stopping.set()

    async def close_node(self) -> None:
        """Close the node adapter (the executor does not close it when ``run`` ends)."""
        await self._node.close()

    async def run(self) -> None:
        """Run until ``stop()`` or cancellation (a cancelled worker acks nothing).

        Raises ``KeyFileError`` before connecting if it trusts no engine key: it would refuse,
        and so terminate, every genuine order; not starting leaves them waiting in JetStream.
        """
        structlog.contextvars.bind_contextvars(
            region=self.region, node=self.node_name, executor_id=self.executor_id
        )
        if self._verifier is None or not self._verifier.key_ids():
            log.error("executor_without_engine_keys")
            raise KeyFileError("the executor trusts no engine signing key (ADR 0063)")
        side: list[asyncio.Task[None]] = []  # health reports, the receive watchers
        async with self._open_bus() as bus:
            self._bus = bus
            info: Subscription | None = None  # `corridor lsp info` (ADR 0252)
            try:
                await ensure_dispatch_stream(bus, duplicate_window_s=self._duplicate_window_s)
                sub = await bind_consumer(bus, self.region, self.node_name, self._limits)
                self._engine = EngineClient(bus, node=self.node_name, limits=self._limits)
                health = asyncio.create_task(self._health(bus), name="executor-health")
                side.append(health)
                # Its node's LSPS1 options for `corridor lsp info` (ADR 0252).
                info = await serve_lsp_info(bus, self._node, node_name=self.node_name)
                if self._follow_invoices:
                    side += self._receives.start_watchers()
                if self._jit is not None:
                    side.append(asyncio.create_task(self._jit.intercept(), name="executor-jit"))
                log.info("executor_started")
                self.ready.set()
                await self._pull(sub)
                await self._drain()
            finally:
                if info is not None:
                    with contextlib.suppress(Exception):
                        await info.unsubscribe()
                # Cancelled again if one lost the cancel (services/cancellation.py).
                recancelled = await cancel_and_wait([*self._tasks, *side])
                log.info("executor_stopped", recancelled=recancelled)

    @contextlib.asynccontextmanager
    async def _open_bus(self) -> AsyncIterator[Bus]:
        """The bus given at construction, left open; else a connection of our own, closed
        when ``run`` ends."""
        if self._given_bus is not None:
            yield self._given_bus
            return
        assert self._nats_url, "checked at construction"
        nc = await connect(
            self._nats_url, name=f"corridor-executor-{self.executor_id}", creds=self._creds
        )
        try:
            yield NatsBus(nc)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _attempt_status(self, intent_id: str) -> AttemptStatus:
        assert self._engine is not None, "the engine client exists while run() runs"
        return await self._engine.attempt_status(intent_id)

    async def _report(self, order: WorkOrder, outcome: RecordPaymentOutcome) -> None:
        assert self._engine is not None, "the engine client exists while run() runs"
        await self._engine.record(
            outcome, causation_id=order.event_id, correlation_id=order.correlation_id,
            traceparent=tracing.current() if order.traceparent else None,
        )  # fmt: skip
        EXECUTOR_PAYMENTS.labels(self.region, self.node_name, outcome.outcome).inc()

    async def _report_channel_op(
        self, report: RecordChannelOpReport, causation_id: str, correlation_id: str
    ) -> None:
        assert self._engine is not None, "the engine client exists while run() runs"
        await self._engine.record_channel_op(
            report, causation_id=causation_id, correlation_id=correlation_id
        )

    async def _report_lsp(
        self, report: RecordLspOrderReport, causation_id: str, correlation_id: str
    ) -> None:
        assert self._engine is not None, "the engine client exists while run() runs"
        await self._engine.record_lsp_report(
            report, causation_id=causation_id, correlation_id=correlation_id
        )

    async def _health(self, bus: Bus) -> None:
        await publish_health(
            bus,
            self._node,
            region=self.region,
            node_name=self.node_name,
            executor_id=self.executor_id,
            limits=self._limits,
        )

    async def _pull(self, sub: PullConsumer) -> None:
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
                msgs = await sub.fetch(batch, timeout_s=limits.fetch_wait_s)
            except TimeoutError:  # no work yet
                backlog = False
                continue
            except BusError as exc:
                # Reconnecting or a server hiccup: the durable keeps our place; look again.
                log.warning("work_fetch_failed", error=type(exc).__name__, detail=str(exc)[:200])
                sub = await self._rebind_if_lost(sub)
                await asyncio.sleep(limits.fetch_wait_s)
                continue
            backlog = bool(msgs) and msgs[-1].num_pending > 0
            for msg in msgs:
                task = asyncio.create_task(self._handle(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _rebind_if_lost(self, sub: PullConsumer) -> PullConsumer:
        """A durable deleted with its stream never comes back by itself: bind a new one. It
        replays the re-created stream from its start; the engine re-issues the open orders
        into it (ADR 0075), and each is checked with the engine before it is paid."""
        assert self._bus is not None, "the bus exists while run() runs"
        try:
            if not await durable_lost(self._bus, self.region, self.node_name):
                return sub
            rebound = await bind_consumer(self._bus, self.region, self.node_name, self._limits)
        except Exception as exc:  # the stream not re-created yet, NATS away: next time
            log.info("executor_rebind_later", error=type(exc).__name__)
            return sub
        log.warning("executor_consumer_rebound")
        await sub.close()
        return rebound

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._limits.stop_grace_s)
            for task in pending:
                log.warning("executor_payment_abandoned_at_stop", task=task.get_name())

    async def _handle(self, msg: Delivery) -> None:
        structlog.contextvars.unbind_contextvars("intent_id", "attempt", "payment_hash")
        if is_receive_order(msg.data):  # a receive's invoice to create or watch (ADR 0220)
            await self._receives.handle(msg)
            return
        if self._jit is not None and is_jit_order(msg.data):  # JIT channels (ADR 0261)
            await self._jit.handle(msg, self._refuse)
            return
        if is_channel_order(msg.data):  # channel opens and closes (ADR 0234)
            assert self._verifier is not None, "run() does not start without a verifier"
            await ChannelOps(
                self._node, region=self.region, node_name=self.node_name,
                verifier=self._verifier, report=self._report_channel_op,
                heartbeat_s=self._limits.heartbeat_s,
            ).handle(msg, self._refuse)  # fmt: skip
            return
        if is_lsp_order(msg.data):  # LSP orders (ADR 0252)
            assert self._verifier is not None and self._engine is not None
            if self._lsp_orders is None:  # one per process: it remembers what it asked
                self._lsp_orders = LspOrders(
                    self._node, region=self.region, node_name=self.node_name,
                    verifier=self._verifier, read=self._engine.lsp_order_events,
                    report=self._report_lsp, heartbeat_s=self._limits.heartbeat_s,
                )  # fmt: skip
            await self._lsp_orders.handle(msg, self._refuse)
            return
        assert self._verifier is not None, "run() does not start without a verifier"
        rebalance = is_rebalance_order(msg.data)
        order: WorkOrder
        try:
            if rebalance:  # paid as a keysend is; its own signature checked here (ADR 0244)
                order = rebalance_work_order(
                    msg.data, self._verifier, bytes_max=self._limits.work_order_bytes_max,
                    headers=msg.headers,
                )  # fmt: skip
            else:
                order = decode_work_order(
                    msg.data, bytes_max=self._limits.work_order_bytes_max, headers=msg.headers
                )
        except SigningError as exc:
            await self._refuse(msg, exc.code, str(exc))
            return
        except WorkOrderTooNew as exc:
            # Written by a newer engine during a rolling upgrade (ADR 0078): an upgraded
            # executor of this node will pay it, so it comes back later, never terminated.
            delivery = msg.num_delivered
            log.warning("work_order_version_too_new", detail=str(exc), delivery=delivery)
            await self._settle_message(msg, Disposition.RETRY, delivery)
            return
        except BadWorkOrder as exc:
            # A poison message can never become a payment; keep it out of the way for good.
            await self._refuse(msg, BadWorkOrder.code, str(exc))
            return
        structlog.contextvars.bind_contextvars(
            intent_id=order.intent_id, attempt=order.attempt, correlation_id=order.correlation_id
        )
        try:
            # Before anything else: an order the engine did not sign, exactly as it arrived,
            # costs one signature check and never a node look-up, an engine query or a send.
            if not rebalance:
                verify_order(
                    self._verifier,
                    intent_id=order.intent_id,
                    event_id=order.event_id,
                    order=order.dispatched,
                )
        except SigningError as exc:
            await self._refuse(msg, exc.code, str(exc))
            return
        if order.region != self.region or order.node != self.node_name:
            # Another node of this region (its own durable sees this order too).
            log.debug("work_order_for_another_node", order_node=order.node)
            await msg.ack()
            return
        if isinstance(order, RebalanceWorkOrder) and order.circle is not None:
            try:  # a circular rebalance pays the node's own invoice (ADR 0247)
                order = await with_own_invoice(self._node, self._secret, order)
            except Exception as exc:  # nothing was paid: the order comes back
                log.warning("rebalance_invoice_unavailable", error=type(exc).__name__,
                            detail=str(exc)[:200])  # fmt: skip
                await self._settle_message(msg, Disposition.RETRY, msg.num_delivered)
                return
        await self._decide(msg, order)

    async def _decide(self, msg: Delivery, order: WorkOrder) -> None:
        delivery = msg.num_delivered
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        refused: OutcomeRefused | None = None
        try:
            # A traced order is paid in a child span of the relay's (ADR 0154); the outcome
            # report carries this span's context (``_report``).
            attributes: tracing.Attributes = {
                "corridor.intent_id": order.intent_id, "corridor.attempt": order.attempt,
            }  # fmt: skip
            with tracing.child_span("corridor.executor.pay", order.traceparent, attributes):
                disposition = await self._payer.process(order, delivery=delivery)
        except OutcomeRefused as exc:
            if not exc.final:
                # Not understood, and the payment may have left: never let go of the order.
                # Held for a person to see, and retried (ADR 0072).
                await self._hold(msg, exc, delivery)
                return
            # For good: an order for an intent the engine does not have (``not_found`` before
            # any send: forged, or the log lost it). A person decides.
            refused, disposition = exc, Disposition.TERM
        except EngineUnavailable as exc:
            log.warning("engine_unavailable", detail=str(exc)[:200])
            disposition = Disposition.RETRY
        except Exception:
            log.exception("work_order_crashed")
            disposition = Disposition.RETRY
        finally:
            heartbeat.cancel()
        if disposition is Disposition.TERM:
            assert refused is not None, "an order is terminated only with the engine's refusal"
            await self._refuse(msg, refused.error_code, str(refused))
            return
        self.processed += 1
        await self._settle_message(msg, disposition, delivery)

    async def _settle_message(self, msg: Delivery, disposition: Disposition, delivery: int) -> None:
        try:
            if disposition is Disposition.DONE:
                await msg.ack()
            elif disposition is Disposition.RETRY:
                await msg.nak(self._limits.redelivery_delay_s(delivery))
            else:
                await msg.term()
        except Exception as exc:
            # A lost ack only means a redelivery, which is answered from the node's record.
            log.warning("work_order_ack_failed", error=type(exc).__name__, detail=str(exc)[:200])

    async def _hold(self, msg: Delivery, refused: OutcomeRefused, delivery: int) -> None:
        """Record an exception item for an order the engine refused in a way the executor does
        not understand, then hand the order back with a jittered back-off (never ``term``)."""
        self.processed += 1
        log.error("work_order_held", code=refused.error_code, detail=str(refused)[:300],
                  delivery=delivery)  # fmt: skip
        await self._dead_letter(msg, refused.error_code, str(refused), held=True)
        delay_s = self._limits.held_delay_s(delivery, self._jitter.random())
        try:
            await msg.nak(delay_s)
        except Exception as exc:
            # A lost nak only means the redelivery comes after ack_wait instead.
            log.warning("work_order_ack_failed", error=type(exc).__name__, detail=str(exc)[:200])

    async def _refuse(self, msg: Delivery, code: str, detail: str) -> None:
        """Terminate an order that must never be paid, once the operator has a record of it.

        If the record cannot be written, the order comes back (nak with delay) and is refused
        again, up to ``refusal_report_deliveries_max`` deliveries; then it is terminated
        anyway, with an error log: an unpayable order must not loop forever.
        """
        self.processed += 1
        delivery = msg.num_delivered
        log.error("work_order_refused", code=code, detail=detail[:300], delivery=delivery)
        if not await self._dead_letter(msg, code, detail):
            if delivery < self._limits.refusal_report_deliveries_max:
                await self._settle_message(msg, Disposition.RETRY, delivery)
                return
            log.error("work_order_refusal_unrecorded", code=code, delivery=delivery)
        await self._settle_message(msg, Disposition.TERM, delivery)

    async def _dead_letter(
        self, msg: Delivery, code: str, detail: str, *, held: bool = False
    ) -> bool:
        """``held``: the order is kept and retried; the record is an exception item for a
        person, marked ``Corridor-Order-Held: true``."""
        assert self._bus is not None, "the bus exists while run() runs"
        sequence = msg.stream_seq or None
        headers = {
            subjects.HDR_ERROR_CODE: code,
            # Header values are single lines (the detail may quote a multi-line decode error).
            subjects.HDR_ERROR_MESSAGE: " ".join(detail.split())[:REFUSAL_MESSAGE_CHARS_MAX],
            subjects.HDR_ORIGINAL_SUBJECT: msg.subject,
        }
        if held:
            headers[HDR_ORDER_HELD] = "true"
        if sequence is not None:
            # One record per stored order, however often it is refused (duplicate window).
            kind = "held" if held else "refused"
            headers[subjects.HDR_MSG_ID] = f"{kind}-{subjects.DISPATCH_STREAM}-{sequence}"
        # An order over the size limit is not copied: the record says why, the stream has it.
        body = msg.data if len(msg.data) <= self._limits.work_order_bytes_max else b""
        try:
            await self._bus.publish(
                refused_orders_subject(self.region, self.node_name),
                body,
                headers=headers,
                timeout_s=self._limits.refusal_report_timeout_s,
            )
        except Exception as exc:
            log.warning(
                "work_order_refusal_record_failed", error=type(exc).__name__, detail=str(exc)[:200]
            )
            return False
        return True

    async def _heartbeat(self, msg: Delivery) -> None:
        while True:
            await asyncio.sleep(self._limits.heartbeat_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()
