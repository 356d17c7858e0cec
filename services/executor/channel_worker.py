"""Channel-operation work orders on the executor (ADR 0234): the signed ``ChannelOpenRequested``
or ``ChannelCloseRequested`` from the dispatch stream, carried out on this node and reported.

An open goes through ``open_once`` (ADR 0233: the node's memo decides, never two opens), is
reported ``broadcast`` with its funding outpoint, then followed on the node until the channel
is open and reported ``final`` with its short channel id. A close asks the node first (a
closing channel is the earlier delivery's close), closes once, reports the closing txid, and
follows the channel until it is gone. The order stays unacked (heartbeats) until the final
report is committed: a killed executor's order comes back and resumes from the node's record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
import structlog

from schemas.channel_messages import (
    CHANNEL_ORDER_EVENTS,
    ChannelCloseRequested,
    ChannelOpenApproved,
    ChannelOpenRequested,
    RecordChannelOpReport,
    is_channel_op_stream,
)
from schemas.records import RecordedEvent
from services.bus.port import Delivery
from services.executor.channel_open import ChannelOpenOrder, memo_for, open_once
from services.executor.errors import BadWorkOrder, OutcomeRefused
from services.lightning.port import NodePort
from services.signing.channel_orders import ChannelOrder, verify_channel_order
from services.signing.port import SigningError, Verifier

log = structlog.get_logger("corridor.executor")

# How often the node is asked whether a broadcast open or close has confirmed: a block is
# ~10 min on mainnet and at least one a second in the dev stack; 1 s costs the node two
# list calls a second per operation in flight, of which there are a handful.
CHANNEL_POLL_S: Final = 1.0
# A report is a few hundred bytes; an order far above this is not one of ours.
CHANNEL_ORDER_BYTES_MAX: Final = 16_384

# The engine's answers to a final report that mean "this close was never broadcast": no earlier
# delivery closed the channel (services/domain/channel_ops/decide.py).
_NOT_CLOSED_BY_US: Final = frozenset({"not_broadcast_yet", "op_rejected", "unknown_op"})

Report = Callable[[RecordChannelOpReport, str, str], Awaitable[object]]
Refuse = Callable[[Delivery, str, str], Awaitable[None]]


class _Head(msgspec.Struct):
    type: str


_head = msgspec.json.Decoder(_Head)
_ORDER_TYPES: Final[dict[str, type[ChannelOrder]]] = {
    "ChannelOpenRequested": ChannelOpenRequested,
    "ChannelCloseRequested": ChannelCloseRequested,
    "ChannelOpenApproved": ChannelOpenApproved,  # ADR 0236
}
_record = msgspec.json.Decoder(RecordedEvent)


class ChannelWorkOrder(msgspec.Struct, frozen=True, kw_only=True):
    op_id: str
    event_id: str
    correlation_id: str
    order: ChannelOrder


def is_channel_order(raw: bytes) -> bool:
    """Whether a dispatch message is a channel order (cheap: the type field only)."""
    try:
        return _head.decode(raw).type in CHANNEL_ORDER_EVENTS
    except msgspec.DecodeError:
        return False


def decode_channel_order(raw: bytes) -> ChannelWorkOrder:
    if len(raw) > CHANNEL_ORDER_BYTES_MAX:
        raise BadWorkOrder(f"channel order is {len(raw)} bytes, limit {CHANNEL_ORDER_BYTES_MAX}")
    try:
        record = _record.decode(raw)
        order: ChannelOrder = msgspec.convert(record.data, _ORDER_TYPES[record.type])
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError) as exc:
        raise BadWorkOrder(f"not a channel order: {exc}") from None
    if not is_channel_op_stream(record.stream_id) or order.op_id != record.stream_id:
        raise BadWorkOrder(f"a channel order on stream {record.stream_id!r}")
    return ChannelWorkOrder(
        op_id=record.stream_id, event_id=record.event_id,
        correlation_id=record.metadata.correlation_id, order=order,
    )  # fmt: skip


def awaits_approval(order: ChannelOrder) -> bool:
    return order.tier != "auto" and not isinstance(order, ChannelOpenApproved)


class ChannelOps:
    """Carries out one node's channel orders; ``report`` commits a report with the engine."""

    def __init__(
        self,
        node: NodePort,
        *,
        region: str,
        node_name: str,
        verifier: Verifier,
        report: Report,
        heartbeat_s: float,
        poll_s: float = CHANNEL_POLL_S,
    ) -> None:
        self._node = node
        self._region = region
        self._node_name = node_name
        self._verifier = verifier
        self._report = report
        self._heartbeat_s = heartbeat_s
        self._poll_s = poll_s

    async def handle(self, msg: Delivery, refuse: Refuse) -> None:
        try:
            work = decode_channel_order(msg.data)
            if awaits_approval(work.order):
                # A request of tier approval is a notice, not an order: its approval
                # (ChannelOpenApproved, signed) is the order that comes later (ADR 0236).
                log.info("channel_order_awaits_approval", op_id=work.op_id)
                await msg.ack()
                return
            verify_channel_order(
                self._verifier, op_id=work.op_id, event_id=work.event_id, order=work.order
            )
        except (BadWorkOrder, SigningError) as exc:
            await refuse(msg, exc.code, str(exc))
            return
        order = work.order
        if order.region != self._region or order.node != self._node_name:
            await msg.ack()  # another node's (its own durable sees it too)
            return
        structlog.contextvars.bind_contextvars(op_id=work.op_id)
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            if isinstance(order, ChannelOpenRequested):
                await self._open(work, order)
            else:
                await self._close(work, order)
        except BadWorkOrder as exc:
            await refuse(msg, exc.code, str(exc))
            return
        except Exception as exc:
            # The node or the engine cannot answer now; the order comes back and resumes
            # from the node's record (nothing is opened or closed twice).
            log.warning("channel_order_retry", error=type(exc).__name__, detail=str(exc)[:200])
            with contextlib.suppress(Exception):
                await msg.nak(self._poll_s)
            return
        finally:
            heartbeat.cancel()
        with contextlib.suppress(Exception):
            await msg.ack()

    async def _send(self, work: ChannelWorkOrder, report: RecordChannelOpReport) -> None:
        await self._report(report, work.event_id, work.correlation_id)

    async def _open(self, work: ChannelWorkOrder, order: ChannelOpenRequested) -> None:
        opened = await open_once(
            self._node,
            ChannelOpenOrder(
                intent_id=work.op_id, peer_pubkey=order.peer_pubkey,
                local_amount_msat=order.local_amount_msat, sat_per_vbyte=order.sat_per_vbyte,
                push_msat=order.push_msat,
            ),
        )  # fmt: skip
        await self._send(work, RecordChannelOpReport(
            op_id=work.op_id, stage="broadcast", txid=opened.funding_txid,
            channel_point=opened.channel_point,
        ))  # fmt: skip
        memo = memo_for(work.op_id)
        while True:
            for channel in await self._node.list_channels():
                if channel.memo == memo and channel.channel_id:
                    await self._send(work, RecordChannelOpReport(
                        op_id=work.op_id, stage="final", channel_id=channel.channel_id,
                    ))  # fmt: skip
                    return
            await asyncio.sleep(self._poll_s)

    async def _close(self, work: ChannelWorkOrder, order: ChannelCloseRequested) -> None:
        point = order.channel_point
        closing_txid = await self._closing_txid(point)
        if closing_txid is None:
            if not any(c.channel_point == point for c in await self._node.list_channels()):
                await self._closed_before(work, point)
                return
            closing_txid = await self._node.close_channel(
                channel_point=point, sat_per_vbyte=order.sat_per_vbyte
            )
        await self._send(work, RecordChannelOpReport(
            op_id=work.op_id, stage="broadcast", txid=closing_txid,
        ))  # fmt: skip
        while await self._closing_txid(point) is not None or any(
            c.channel_point == point for c in await self._node.list_channels()
        ):
            await asyncio.sleep(self._poll_s)
        await self._send(work, RecordChannelOpReport(op_id=work.op_id, stage="final"))

    async def _closed_before(self, work: ChannelWorkOrder, point: str) -> None:
        """The channel is neither open nor closing on the node. If the engine recorded this
        close's broadcast, an earlier delivery closed it and the close has confirmed since (the
        node forgets a closed channel): report it final, the idempotent close. If not, it is
        not ours to close; an operator decides (dead letter)."""
        try:
            await self._send(work, RecordChannelOpReport(op_id=work.op_id, stage="final"))
        except OutcomeRefused as exc:
            if exc.error_code in _NOT_CLOSED_BY_US:
                raise BadWorkOrder(f"no open or closing channel {point} on the node") from None
            raise
        log.info("channel_close_found_closed", point=point)

    async def _closing_txid(self, point: str) -> str | None:
        for pending in await self._node.pending_channels():
            if pending.channel_point == point and pending.state == "closing":
                return pending.closing_txid or ""
        return None

    async def _heartbeat(self, msg: Delivery) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()
