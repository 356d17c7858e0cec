"""LSP-order work orders on the executor (ADR 0252): the signed ``LspOrderRequested`` from the
dispatch stream, carried out through this executor's own node (LSPS1 over custom messages,
``services/lsps/lsps1.py``) and reported to the engine (``RecordLspOrderReport`` on
``corridor.api.v1.lsp.report.<node>``, a subject only this node's executor may publish).

Each round asks the engine the order's recorded state first (``lsp.get.executor.<node>``):
``create_order`` is sent only while the log says the order waits for it, and only once by this
process. After a restart the order comes back and the log says where it is; an order the LSP
created is never created again, only followed with ``get_order``. The payment is the engine's
(``services/engine/lsp_order_payments.py``), driven by these reports; the executor never pays
an LSP order itself. The order stays unacked (heartbeats) until the log has its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
import structlog

from schemas import lsp_messages as lm
from schemas.events import EventData
from schemas.records import RecordedEvent
from schemas.upcasting import decode
from services.bus.port import Delivery
from services.domain.lsp_orders import LspOrder, LspOrderStatus, replay
from services.executor.errors import BadWorkOrder, OutcomeRefused
from services.lightning.port import NodePort
from services.lsps.client import LspsClient, LspsTimeout, LspsUnavailable
from services.lsps.lsps1 import Lsps1Client, LspsProtocolError
from services.signing.lsp_orders import verify_lsp_order
from services.signing.port import SigningError, Verifier

log = structlog.get_logger("corridor.executor")

# How often an open order is looked at (the log, then the LSP): an LSP's order moves in
# seconds (payment, funding broadcast); one get_order a second per order in flight is cheap.
LSP_POLL_S: Final = 1.0
# bLIP-50: a response "on the scale of minutes"; each LSPS call waits at most this long.
LSPS_CALL_TIMEOUT_S: Final = 30.0
# An order event is a few hundred bytes plus the token (at most 512 characters).
LSP_ORDER_BYTES_MAX: Final = 16_384

Report = Callable[[lm.RecordLspOrderReport, str, str], Awaitable[object]]
ReadOrder = Callable[[str], Awaitable[list[RecordedEvent]]]
Refuse = Callable[[Delivery, str, str], Awaitable[None]]


class _Head(msgspec.Struct):
    type: str


_head = msgspec.json.Decoder(_Head)
_record = msgspec.json.Decoder(RecordedEvent)


class LspWorkOrder(msgspec.Struct, frozen=True, kw_only=True):
    lsp_order_id: str
    event_id: str
    correlation_id: str
    order: lm.LspOrderRequested


def is_lsp_order(raw: bytes) -> bool:
    """Whether a dispatch message is an LSP order (cheap: the type field only)."""
    try:
        return _head.decode(raw).type == "LspOrderRequested"
    except msgspec.DecodeError:
        return False


def decode_lsp_order(raw: bytes) -> LspWorkOrder:
    if len(raw) > LSP_ORDER_BYTES_MAX:
        raise BadWorkOrder(f"LSP order is {len(raw)} bytes, limit {LSP_ORDER_BYTES_MAX}")
    try:
        record = _record.decode(raw)
        order = msgspec.convert(record.data, lm.LspOrderRequested)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadWorkOrder(f"not an LSP order: {exc}") from None
    if not lm.is_lsp_order_stream(record.stream_id) or order.lsp_order_id != record.stream_id:
        raise BadWorkOrder(f"an LSP order on stream {record.stream_id!r}")
    return LspWorkOrder(
        lsp_order_id=record.stream_id, event_id=record.event_id,
        correlation_id=record.metadata.correlation_id, order=order,
    )  # fmt: skip


class LspOrders:
    """Carries out one node's LSP orders. ``read`` is the engine's record of an order,
    ``report`` commits a report with the engine."""

    def __init__(
        self,
        node: NodePort,
        *,
        region: str,
        node_name: str,
        verifier: Verifier,
        read: ReadOrder,
        report: Report,
        heartbeat_s: float,
        poll_s: float = LSP_POLL_S,
        call_timeout_s: float = LSPS_CALL_TIMEOUT_S,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._node = node
        self._region = region
        self._node_name = node_name
        self._verifier = verifier
        self._read = read
        self._report = report
        self._heartbeat_s = heartbeat_s
        self._poll_s = poll_s
        self._call_timeout_s = call_timeout_s
        self._now_ms = now_ms
        # The orders whose create_order this process sent (bounded by the orders it runs).
        self._asked: set[str] = set()

    async def handle(self, msg: Delivery, refuse: Refuse) -> None:
        try:
            work = decode_lsp_order(msg.data)
            verify_lsp_order(
                self._verifier, lsp_order_id=work.lsp_order_id, event_id=work.event_id,
                order=work.order,
            )  # fmt: skip
        except (BadWorkOrder, SigningError) as exc:
            await refuse(msg, exc.code, str(exc))
            return
        if work.order.region != self._region or work.order.node != self._node_name:
            await msg.ack()  # another node's (its own durable sees it too)
            return
        structlog.contextvars.bind_contextvars(lsp_order_id=work.lsp_order_id)
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            await self.follow(work)
        except Exception as exc:
            # The node, the LSP or the engine cannot answer now; the order comes back and
            # resumes from the log's record (nothing is created or paid twice).
            log.warning("lsp_order_retry", error=type(exc).__name__, detail=str(exc)[:200])
            with contextlib.suppress(Exception):
                await msg.nak(self._poll_s)
            return
        finally:
            heartbeat.cancel()
        with contextlib.suppress(Exception):
            await msg.ack()

    async def follow(self, work: LspWorkOrder) -> LspOrder:
        """Rounds until the log records the order's end."""
        async with LspsClient(self._node) as lsps:
            lsps1 = Lsps1Client(lsps, self._node, timeout_s=self._call_timeout_s)
            while True:
                state = await self.round(work, lsps, lsps1)
                if state.terminal:
                    log.info("lsp_order_ended", status=str(state.status), outcome=state.outcome)
                    return state
                await asyncio.sleep(self._poll_s)  # a poll of the LSP, not a synchronisation

    async def round(self, work: LspWorkOrder, lsps: LspsClient, lsps1: Lsps1Client) -> LspOrder:
        """The log's record of the order, and at most one question to the LSP whose answer is
        reported; returns the record as it was before the report."""
        state = replay(_events(await self._read(work.lsp_order_id)))
        if state is None:
            raise BadWorkOrder(f"the engine has no order {work.lsp_order_id}")
        if state.terminal:
            return state
        report = await self._next_report(work, state, lsps, lsps1)
        if report is not None:
            try:
                await self._report(report, work.event_id, work.correlation_id)
            except OutcomeRefused as exc:
                # payment_pending (the engine records our payment first), or a report the
                # order does not take (a second remote order): the log stands.
                log.info("lsp_order_report_refused", code=exc.error_code)
        return state

    async def _next_report(
        self, work: LspWorkOrder, state: LspOrder, lsps: LspsClient, lsps1: Lsps1Client
    ) -> lm.RecordLspOrderReport | None:
        order_id = work.lsp_order_id
        try:
            if state.status is LspOrderStatus.REQUESTED:
                return await self._ask(work, state, lsps, lsps1)
            assert state.remote_order_id is not None and state.lsp_pubkey is not None
            return await lsps1.get_order(order_id, state.lsp_pubkey, state.remote_order_id)
        except (LspsTimeout, LspsUnavailable) as exc:
            log.info("lsp_order_no_answer", reason=str(exc))
            return None  # get_order is asked again next round
        except LspsProtocolError as exc:
            log.warning("lsp_order_bad_answer", reason=str(exc))
            return None

    async def _ask(
        self, work: LspWorkOrder, state: LspOrder, lsps: LspsClient, lsps1: Lsps1Client
    ) -> lm.RecordLspOrderReport | None:
        order_id = work.lsp_order_id
        if self._now_ms() >= state.answer_deadline_ms:
            return lm.RecordLspOrderReport(lsp_order_id=order_id, stage="no_answer")
        if order_id in self._asked:
            # create_order is not idempotent: sent once by this process. Without an answer
            # by the deadline the order fails unpaid (one the LSP made anyway expires there).
            return None
        try:
            await lsps.ready(work.order.lsp_pubkey, timeout_s=self._call_timeout_s)
        except (LspsTimeout, LspsUnavailable, TimeoutError) as exc:
            log.info("lsp_order_lsp_unreachable", reason=str(exc))
            return None  # nothing was sent: asked again next round
        self._asked.add(order_id)
        return await lsps1.create_order(order_id, work.order)

    async def _heartbeat(self, msg: Delivery) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()


def _events(records: list[RecordedEvent]) -> list[EventData]:
    return [decode(r.type, r.version, r.data) for r in records]
