"""LSP orders driven to the end: the service layer between the aggregate, the event log, the
LSP (LSPS1 through our node) and the payment intent that pays the LSP's invoice (ADR 0251).

Each step reads the order's ``lsp-`` stream, asks the outside world one thing, and appends
what the aggregate decides about the answer (``decide``/``evolve``, expected version: a
concurrent writer loses with ``ConcurrencyConflict`` and nothing is recorded twice). The
invoice is paid only through ``PaymentIntents.pay`` with the order's own idempotency key
(``lsp-order:<order id>``): an ordinary payment intent, with policy, audit trail and the
engine's never-twice, however often a step is retried or a process restarts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Final, Literal, Protocol

import msgspec
import structlog

from schemas import lsp_messages as lm
from schemas.common import Caller
from schemas.records import EventMetadata
from services.domain.lsp_orders import (
    LspOrder,
    LspOrderContext,
    LspOrderPolicy,
    LspOrderStatus,
    Refusal,
    decide,
    evolve,
    replay,
)
from services.domain.lsp_orders.ids import lsp_order_id_for
from services.engine.event_codec import to_domain, to_new_events
from services.eventstore.port import ConcurrencyConflict, EventStore
from services.lightning.port import NodePort
from services.lsps.client import LspsClient, LspsTimeout, LspsUnavailable
from services.lsps.lsps1 import Lsps1Client, LspsProtocolError

log = structlog.get_logger(__name__)

# The most one order may buy by default: lnd's largest channel without wumbo (2^24 - 1 sat).
LSP_BALANCE_MSAT_MAX: Final = (2**24 - 1) * 1000
# bLIP-50: "a timeout on the scale of minutes" for a response; create_order is not idempotent,
# so a timed-out one is never sent again: the order fails unpaid after this window.
ANSWER_WINDOW_MS: Final = 120_000
DEFAULT_POLICY: Final = LspOrderPolicy(
    lsp_balance_msat_max=LSP_BALANCE_MSAT_MAX, answer_window_ms=ANSWER_WINDOW_MS
)
# A step that answers nothing new waits this long before the next look (CLI and worker loop).
POLL_S_DEFAULT: Final = 0.5

IntentOutcome = Literal["succeeded", "failed"]


class PaymentIntents(Protocol):
    """The engine's payment intents, as the order's payer uses them."""

    async def pay(self, *, key: str, invoice: str, amount_msat: int, max_fee_msat: int) -> str:
        """Submit (or find, for a key already used) the intent; its id."""
        ...

    async def outcome(self, intent_id: str) -> IntentOutcome | None:
        """``succeeded``, ``failed`` (for good: failed, rejected, cancelled, expired), or None
        while it is still on its way."""
        ...


class LspOrders:
    def __init__(
        self,
        *,
        store: EventStore,
        node: NodePort,
        lsps: LspsClient,
        intents: PaymentIntents,
        caller: Caller,
        timeout_s: float,
        policy: LspOrderPolicy = DEFAULT_POLICY,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self._node = node
        self._lsps = lsps
        self._lsps1 = Lsps1Client(lsps, node, timeout_s=timeout_s)
        self._intents = intents
        self._caller = caller
        self._timeout_s = timeout_s
        self._policy = policy
        self._now_ms = now_ms
        # Orders whose create_order this process has sent (bounded by the orders it runs).
        self._asked: set[str] = set()

    async def order(self, command: lm.OrderLspChannel) -> LspOrder:
        """Record the order (or find it again for the same key); raises ``OrderRefused``."""
        order_id = lsp_order_id_for(self._caller.id, command.idempotency_key)
        fingerprint = msgspec.json.encode(command).hex()
        return await self._apply(order_id, command, fingerprint=fingerprint)

    async def state(self, order_id: str) -> LspOrder | None:
        return replay(to_domain(e) for e in await self._store.read_stream(order_id))

    async def step(self, order_id: str) -> LspOrder:
        """Ask the world one thing about the order and record the answer."""
        state = await self.state(order_id)
        assert state is not None, f"no order {order_id}"
        if state.terminal:
            return state
        report = await self._next_report(state)
        if report is None:
            return state
        try:
            return await self._apply(order_id, report)
        except ConcurrencyConflict:
            # Another runner of the same order recorded first: its record stands.
            return await self.state(order_id) or state
        except OrderRefused as refused:
            # A report the order does not take (a second remote order after a restart, a
            # status that contradicts the record): kept out of the log, and said.
            log.warning("lsp_order_report_refused", lsp_order_id=order_id, code=refused.code)
            return state

    async def run(
        self, order_id: str, *, deadline_s: float, poll_s: float = POLL_S_DEFAULT
    ) -> LspOrder:
        """Steps until the order is terminal or ``deadline_s`` (monotonic) passes."""
        while True:
            state = await self.step(order_id)
            if state.terminal or time.monotonic() >= deadline_s:
                return state
            await asyncio.sleep(poll_s)  # a poll of the LSP and the intent, not a synchronisation

    async def _next_report(self, state: LspOrder) -> lm.RecordLspOrderReport | None:
        order_id = state.lsp_order_id
        assert state.lsp_pubkey is not None
        try:
            if state.status is LspOrderStatus.REQUESTED:
                return await self._ask_lsp(state)
            assert state.remote_order_id is not None
            if state.status is LspOrderStatus.PAYING:
                paid = await self._pay(state)
                if paid is not None:
                    return paid
            status = await self._lsps1.get_order(order_id, state.lsp_pubkey, state.remote_order_id)
            if state.status is LspOrderStatus.PAYING and status.order_state == "COMPLETED":
                # The LSP settled our HTLC: our intent's success is on its way. Recorded
                # first, so the log links the order to the intent that paid it.
                return None
            return status
        except (LspsTimeout, LspsUnavailable) as exc:
            log.info("lsp_order_no_answer", lsp_order_id=order_id, reason=str(exc))
            return None  # asked again at the next step (get_order and pay are idempotent)

    async def _ask_lsp(self, state: LspOrder) -> lm.RecordLspOrderReport | None:
        order_id = state.lsp_order_id
        if self._now_ms() >= state.answer_deadline_ms:
            return lm.RecordLspOrderReport(lsp_order_id=order_id, stage="no_answer")
        if order_id in self._asked:
            # create_order is not idempotent: sent once by this process, never again. Without
            # an answer by the deadline the order fails unpaid (an order the LSP made anyway
            # expires there). After a restart it may be sent again; only the first answer is
            # recorded (a second remote order is refused), so at most one is ever paid.
            return None
        requested = await self._requested(order_id)
        try:
            await self._lsps.ready(requested.lsp_pubkey, timeout_s=self._timeout_s)
        except (LspsTimeout, LspsUnavailable, TimeoutError) as exc:
            log.info("lsp_order_lsp_unreachable", lsp_order_id=order_id, reason=str(exc))
            return None  # nothing was sent: asked again at the next step
        self._asked.add(order_id)
        try:
            return await self._lsps1.create_order(order_id, requested)
        except LspsProtocolError as exc:
            log.warning("lsp_order_bad_answer", lsp_order_id=order_id, reason=str(exc))
            return None
        except (LspsTimeout, LspsUnavailable) as exc:
            log.info("lsp_order_no_answer", lsp_order_id=order_id, reason=str(exc))
            return None

    async def _pay(self, state: LspOrder) -> lm.RecordLspOrderReport | None:
        assert state.payment_key is not None and state.invoice is not None
        assert state.order_total_msat is not None
        if state.caller != self._caller:
            # An intent's idempotency is per caller: another caller's runner would make a
            # second intent for the same invoice. Only the order's own caller pays it.
            log.info("lsp_order_not_our_caller", lsp_order_id=state.lsp_order_id)
            return None
        intent_id = await self._intents.pay(
            key=state.payment_key, invoice=state.invoice, amount_msat=state.order_total_msat,
            max_fee_msat=state.max_routing_fee_msat,
        )  # fmt: skip
        outcome = await self._intents.outcome(intent_id)
        order_id = state.lsp_order_id
        if outcome == "succeeded":
            return lm.RecordLspOrderReport(
                lsp_order_id=order_id, stage="paid", payment_intent_id=intent_id
            )
        if outcome == "failed":
            return lm.RecordLspOrderReport(lsp_order_id=order_id, stage="unpaid")
        return None  # the intent is on its way; the LSP's view is read meanwhile

    async def _requested(self, order_id: str) -> lm.LspOrderRequested:
        first = to_domain((await self._store.read_stream(order_id))[0])
        assert isinstance(first, lm.LspOrderRequested)
        return first

    async def _apply(
        self,
        order_id: str,
        command: lm.OrderLspChannel | lm.RecordLspOrderReport,
        *,
        fingerprint: str = "",
    ) -> LspOrder:
        # A report is what an outside party told us: checked against its schema's limits
        # before the aggregate sees it.
        command = msgspec.convert(msgspec.to_builtins(command), type(command))
        stored = await self._store.read_stream(order_id)
        state = replay(to_domain(e) for e in stored)
        ctx = LspOrderContext(
            lsp_order_id=order_id, request_fingerprint=fingerprint or (
                state.request_fingerprint if state else ""
            ),
            caller=self._caller, policy=self._policy, now_ms=self._now_ms(),
        )  # fmt: skip
        decision = decide(state, command, ctx)
        if isinstance(decision, Refusal):
            raise OrderRefused(decision.code, decision.field)
        if not decision:
            assert state is not None
            return state
        metadata = EventMetadata(
            correlation_id=order_id, causation_id=str(uuid.uuid4()),
            actor=f"operator:{self._caller.id}", owner=self._caller.id,
        )  # fmt: skip
        version = len(stored) + 1
        await self._store.append(
            to_new_events(order_id, version, decision, metadata, self._now_ms())
        )
        for event in decision:
            state = evolve(state, event)
        assert state is not None
        log.info("lsp_order_recorded", lsp_order_id=order_id, status=str(state.status))
        return state


class OrderRefused(Exception):
    def __init__(self, code: str, field: str | None) -> None:
        super().__init__(f"LSP order refused: {code}" + (f" ({field})" if field else ""))
        self.code = code
        self.field = field
