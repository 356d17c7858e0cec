"""The LSP side of JIT channels on our node's executor (ADR 0261): the interception loop and
the JIT work orders.

``JitInterception`` reads the node's held HTLCs (InterceptorPort, ADR 0260) and records each
one for its sale with the engine (``RecordJitHtlc``); the engine decides, once per sale, to
open and forward, and writes that as a signed ``JitHtlcIntercepted`` order. ``JitOrders``
carries the order out when the relay dispatches it: the zero-conf channel through
``open_once`` (the node's memo decides: never two channels for one sale), then the forward of
the payment less the opening fee with the extra_fee TLV, each reported to the engine.

A restart is safe at every point: the node replays the HTLCs it holds (the engine answers a
recorded HTLC without a new event), the order comes back until its last report is committed,
the open is found by its memo, and an HTLC the node no longer holds is never resolved again:
the forward is then recognised on the new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import msgspec
import structlog

from schemas.jit_messages import (
    JIT_ORDER_EVENTS,
    JitCommand,
    JitHtlcIntercepted,
    RecordJitHtlc,
    RecordJitReport,
    is_jit_stream,
)
from schemas.records import RecordedEvent
from schemas.replies import CommandAccepted
from services.bus.port import Delivery
from services.engine.ids import jit_sale_id_for
from services.executor.channel_open import ChannelOpenOrder, memo_for, open_once
from services.executor.errors import BadWorkOrder, OutcomeRefused
from services.lightning.interceptor_port import (
    FailHtlc,
    HeldHtlc,
    InterceptorPort,
    ResumeHtlc,
)
from services.lightning.port import Channel, FailureReason, NodeError, NodePort
from services.signing.jit_orders import verify_jit_order
from services.signing.port import SigningError, Verifier

log = structlog.get_logger("corridor.executor.jit")

# JIT SCIDs are in lnd's alias range (services.engine.ids.jit_scid_for).
JIT_SCID_BLOCK_MIN: Final = 16_000_000
# After the node's stream broke: wait this long before asking again (the node replays).
RECONNECT_S: Final = 1.0
# How long an order waits for its HTLC to be offered (after a restart the node replays it
# within a moment of the new stream); then the node is asked whether it was forwarded.
HTLC_WAIT_S: Final = 10.0
# The zero-conf open's fee rate: the funding transaction only has to confirm eventually.
JIT_SAT_PER_VBYTE: Final = 2
JIT_ORDER_BYTES_MAX: Final = 16_384
# Held HTLCs kept in memory at once: the node itself holds no more than a few per sale.
HELD_BOOK_MAX: Final = 10_000


class JitEngine(Protocol):
    async def record_jit(
        self, command: JitCommand, *, causation_id: str, correlation_id: str
    ) -> CommandAccepted: ...


class JitNode(NodePort, InterceptorPort, Protocol):
    """A node adapter that can intercept (LndAdapter, SimNodeAdapter)."""


def is_jit_scid(scid: str) -> bool:
    block, _, _ = scid.partition("x")
    return block.isdigit() and int(block) >= JIT_SCID_BLOCK_MIN


class HeldBook:
    """The HTLCs the node holds for us, by circuit key, shared by the loop and the orders."""

    def __init__(self) -> None:
        self._held: dict[str, HeldHtlc] = {}
        self._changed = asyncio.Event()

    def put(self, htlc: HeldHtlc) -> None:
        if len(self._held) >= HELD_BOOK_MAX and htlc.key not in self._held:
            self._held.pop(next(iter(self._held)))  # the oldest: the node auto-fails it
        self._held[htlc.key] = htlc
        self._changed.set()

    def take(self, key: str) -> HeldHtlc | None:
        return self._held.pop(key, None)

    async def wait_for(self, key: str, timeout_s: float) -> HeldHtlc | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while key not in self._held:
                    self._changed.clear()
                    await self._changed.wait()
        return self._held.get(key)


class JitInterception:
    """Records each held HTLC with the engine; fails back what is not a live sale's."""

    def __init__(self, node: JitNode, engine: JitEngine, *, node_name: str, book: HeldBook) -> None:
        self._node = node
        self._engine = engine
        self._node_name = node_name
        self._book = book

    async def run(self) -> None:
        while True:
            try:
                async for htlc in self._node.held_htlcs():
                    await self._on_held(htlc)
            except NodeError as exc:
                log.warning("jit_interceptor_reconnect", detail=str(exc)[:200])
            await asyncio.sleep(RECONNECT_S)

    async def _on_held(self, htlc: HeldHtlc) -> None:
        self._book.put(htlc)
        if not is_jit_scid(htlc.outgoing_scid):
            # Not a SCID we sell: what lnd does for an unknown channel.
            await self._fail(htlc, "not_jit")
            return
        sale_id = jit_sale_id_for(self._node_name, htlc.outgoing_scid)
        command = RecordJitHtlc(
            sale_id=sale_id, htlc_key=htlc.key, payment_hash=htlc.payment_hash,
            amount_msat=htlc.outgoing_amount_msat, auto_fail_height=htlc.auto_fail_height,
        )  # fmt: skip
        try:
            reply = await self._engine.record_jit(
                command, causation_id=f"{sale_id}/{htlc.key}", correlation_id=sale_id
            )
        except OutcomeRefused as exc:
            # No such sale, or another HTLC of a sale in progress: not ours to take.
            await self._fail(htlc, exc.error_code)
            return
        log.info("jit_htlc_recorded", sale_id=sale_id, state=reply.state, dup=reply.duplicate)
        if reply.state == "failed":
            await self._fail(htlc, reply.reason or "failed")

    async def _fail(self, htlc: HeldHtlc, why: str) -> None:
        log.info("jit_htlc_failed_back", htlc=htlc.key, why=why)
        self._book.take(htlc.key)
        with contextlib.suppress(NodeError):  # gone already: the node resolved it
            await self._node.resolve_htlc(htlc, FailHtlc())


Refuse = Callable[[Delivery, str, str], Awaitable[None]]


class JitWorkOrder(msgspec.Struct, frozen=True, kw_only=True):
    sale_id: str
    event_id: str
    correlation_id: str
    order: JitHtlcIntercepted


_record = msgspec.json.Decoder(RecordedEvent)


class _Head(msgspec.Struct):
    type: str


_head = msgspec.json.Decoder(_Head)


def is_jit_order(raw: bytes) -> bool:
    try:
        return _head.decode(raw).type in JIT_ORDER_EVENTS
    except msgspec.DecodeError:
        return False


def decode_jit_order(raw: bytes) -> JitWorkOrder:
    if len(raw) > JIT_ORDER_BYTES_MAX:
        raise BadWorkOrder(f"JIT order is {len(raw)} bytes, limit {JIT_ORDER_BYTES_MAX}")
    try:
        record = _record.decode(raw)
        order = msgspec.convert(record.data, JitHtlcIntercepted)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadWorkOrder(f"not a JIT order: {exc}") from None
    if not is_jit_stream(record.stream_id) or order.sale_id != record.stream_id:
        raise BadWorkOrder(f"a JIT order on stream {record.stream_id!r}")
    return JitWorkOrder(
        sale_id=record.stream_id, event_id=record.event_id,
        correlation_id=record.metadata.correlation_id, order=order,
    )  # fmt: skip


class JitOrders:
    """Carries out one node's JIT orders: open once, forward once, report each."""

    def __init__(
        self,
        node: JitNode,
        engine: JitEngine,
        *,
        region: str,
        node_name: str,
        verifier: Verifier,
        book: HeldBook,
        heartbeat_s: float,
        htlc_wait_s: float = HTLC_WAIT_S,
    ) -> None:
        self._node = node
        self._engine = engine
        self._region = region
        self._node_name = node_name
        self._verifier = verifier
        self._book = book
        self._heartbeat_s = heartbeat_s
        self._htlc_wait_s = htlc_wait_s

    async def handle(self, msg: Delivery, refuse: Refuse) -> None:
        try:
            work = decode_jit_order(msg.data)
            verify_jit_order(
                self._verifier, sale_id=work.sale_id, event_id=work.event_id, order=work.order
            )
        except (BadWorkOrder, SigningError) as exc:
            await refuse(msg, exc.code, str(exc))
            return
        if work.order.region != self._region or work.order.node != self._node_name:
            await msg.ack()  # another node's
            return
        structlog.contextvars.bind_contextvars(sale_id=work.sale_id)
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            done = await self.execute(work)
        except (NodeError, OutcomeRefused, Exception) as exc:
            log.warning("jit_order_retry", error=type(exc).__name__, detail=str(exc)[:200])
            done = False
        finally:
            heartbeat.cancel()
        with contextlib.suppress(Exception):
            await (msg.ack() if done else msg.nak(RECONNECT_S))

    async def execute(self, work: JitWorkOrder) -> bool:
        """True once the sale's last report is committed; False to try again later."""
        order = work.order
        try:
            channel_point = await self._open_once(work)
        except NodeError as exc:
            if exc.reason is FailureReason.NODE_UNAVAILABLE:
                raise
            # The client refused the channel or is not connected (bLIP-52 section 5).
            held = self._book.take(order.htlc_key)
            if held is not None:
                with contextlib.suppress(NodeError):
                    await self._node.resolve_htlc(held, FailHtlc())
            await self._report(work, RecordJitReport(
                sale_id=work.sale_id, stage="failed", failure="open_failed",
            ), "failed")  # fmt: skip
            return True
        channel = await self._channel_of(work)
        await self._report(work, RecordJitReport(
            sale_id=work.sale_id, stage="opened", channel_point=channel_point,
            alias_scid=channel.channel_id if channel is not None and channel.channel_id else None,
        ), "opened")  # fmt: skip
        held = await self._book.wait_for(order.htlc_key, self._htlc_wait_s)
        if held is not None:
            await self._node.resolve_htlc(
                held,
                ResumeHtlc(
                    out_amount_msat=order.forward_msat,
                    extra_fee_msat=order.opening_fee_msat,
                    next_peer_pubkey=order.client_pubkey,
                ),
            )
            self._book.take(order.htlc_key)
            log.info(
                "jit_forwarded", forward_msat=order.forward_msat, fee_msat=order.opening_fee_msat
            )
        elif not await self._forwarded_on_channel(work, order.forward_msat):
            return False  # not held (yet) and not forwarded: ask again later
        await self._report(
            work, RecordJitReport(sale_id=work.sale_id, stage="forwarded"), "forwarded"
        )
        return True

    def _keeps_memo(self) -> bool:
        # Core Lightning keeps no channel memo (ADR 0233): ClnAdapter says so.
        return bool(getattr(self._node, "keeps_channel_memo", True))

    async def _open_once(self, work: JitWorkOrder) -> str:
        """The sale's channel point: opened now, or found from an earlier delivery."""
        order = work.order
        if self._keeps_memo():
            opened = await open_once(
                self._node,
                ChannelOpenOrder(
                    intent_id=work.sale_id, peer_pubkey=order.client_pubkey,
                    local_amount_msat=order.channel_size_msat, sat_per_vbyte=JIT_SAT_PER_VBYTE,
                    zero_conf=True, private=True,
                ),
            )  # fmt: skip
            return opened.channel_point
        # Without a memo the sale's channel is the one we opened to its client (ADR 0261: a
        # node without memos serves one JIT sale per client at a time).
        existing = await self._channel_of(work)
        if existing is not None:
            return existing.channel_point
        for pending in await self._node.pending_channels():
            if pending.peer_pubkey == order.client_pubkey and pending.state == "opening":
                return pending.channel_point
        opening = await self._node.open_channel(
            peer_pubkey=order.client_pubkey, local_amount_msat=order.channel_size_msat,
            sat_per_vbyte=JIT_SAT_PER_VBYTE, zero_conf=True, private=True,
        )  # fmt: skip
        return opening.channel_point

    async def _channel_of(self, work: JitWorkOrder) -> Channel | None:
        memo = memo_for(work.sale_id)
        for channel in await self._node.list_channels():
            if self._keeps_memo():
                if channel.memo == memo:
                    return channel
            elif channel.peer_pubkey == work.order.client_pubkey and channel.initiator:
                return channel
        return None

    async def _forwarded_on_channel(self, work: JitWorkOrder, forward_msat: int) -> bool:
        """Evidence that an earlier delivery forwarded: the new channel carries the forward
        (in flight or settled on the client's side)."""
        channel = await self._channel_of(work)
        if channel is None:
            return False
        return channel.remote_balance_msat + channel.pending_htlcs_msat >= forward_msat

    async def _report(self, work: JitWorkOrder, report: RecordJitReport, stage: str) -> None:
        await self._engine.record_jit(
            report, causation_id=f"{work.event_id}/{stage}", correlation_id=work.correlation_id
        )

    async def _heartbeat(self, msg: Delivery) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()
