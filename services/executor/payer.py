"""The never-pay-twice procedure for one delivery of one work order (no JetStream here).

The worker has checked the engine's signature before an order gets here (ADR 0063).

1. The payment hash is the idempotency key: on a redelivery the node's record of the hash is
   asked first. A first delivery skips that look-up: no earlier delivery of this attempt can
   have sent anything, and the node itself refuses a second live attempt for one hash.
2. Only when the node has no record *and* the engine says this attempt is current and still
   waiting for a send does the executor send (``NodePort.pay`` again refuses a second send).
   The engine is asked on every delivery, the first included (ADR 0063): a signed order
   proves what the engine dispatched, the answer proves it is still the attempt to send.
3. Every outcome is taken from the node's answer to this send or from its record. A failure is
   reported only with the node's evidence (a final ``failed`` answer or record, or no record
   at all); without evidence nothing is reported and the delivery is retried later. On a
   first delivery an ambiguous send is always retried: only a look-up *before* the send
   tells a record of this send from an older one. Unknown is a state, never a failure.

See docs/adr/0203-executor-never-pays-twice.md.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from schemas.commands import RecordPaymentOutcome
from services.executor import outcomes
from services.executor.engine_client import AttemptStatus
from services.executor.errors import NodeUnreachable
from services.executor.limits import ExecutorLimits
from services.executor.target import PayTarget, pay_target
from services.executor.work_order import WorkOrder
from services.failpoints import failpoint
from services.lightning.port import (
    FailureReason,
    NodeError,
    NodePort,
    PaymentFailed,
    PaymentInFlight,
    PaymentResult,
    PaymentSucceeded,
)

log = structlog.get_logger("corridor.executor")

Report = Callable[[WorkOrder, RecordPaymentOutcome], Awaitable[None]]
StatusOf = Callable[[str], Awaitable[AttemptStatus]]


class Disposition(enum.Enum):
    DONE = "done"  # the outcome is committed (or the work order is obsolete): ack
    RETRY = "retry"  # no decision possible now: redeliver later
    # Never payable, or refused by the engine for good: stop redelivering; the worker records
    # it in the dead-letter stream for the operator first.
    TERM = "term"


class Payer:
    def __init__(
        self,
        node: NodePort,
        *,
        secret: bytes,
        limits: ExecutorLimits,
        report: Report,
        status_of: StatusOf,
    ) -> None:
        self._node = node
        self._secret = secret
        self._limits = limits
        self._report = report
        self._status_of = status_of

    async def process(self, order: WorkOrder, *, delivery: int) -> Disposition:
        try:
            target = pay_target(order, self._secret)
        except ValueError as exc:
            # Nothing can have been sent for an order we cannot even turn into a request.
            log.error("work_order_unpayable", detail=str(exc)[:200])
            refused = PaymentFailed(
                payment_hash="",
                reason=FailureReason.INCORRECT_DETAILS,
                detail=f"unpayable work order: {exc}",
            )
            await self._report(order, outcomes.failed_with_proof(order, None, refused))
            return Disposition.DONE
        structlog.contextvars.bind_contextvars(payment_hash=target.payment_hash)
        looked_up = delivery > 1
        try:
            record = await self._lookup(target.payment_hash) if looked_up else None
            if record is None:
                # Always asked, first delivery included (ADR 0063): an intent the engine does not
                # have raises ``OutcomeRefused`` (``not_found``) and the order is terminated.
                status = await self._status_of(order.intent_id)
                if not status.awaits_send(order.attempt):
                    # Re-routed, resolved or reported already: sending now could pay twice.
                    # An order re-issued because its node went quiet (ADR 0075) asks the node
                    # for its record instead: evidence only, never a send.
                    if status.awaits_evidence(order.attempt) and not looked_up:
                        record = await self._lookup(target.payment_hash)
                        if record is not None:
                            return await self._conclude(order, target.payment_hash, record)
                    log.info("work_order_obsolete", state=status.state, current=status.attempt)
                    return Disposition.DONE
                checked = msgspec.structs.replace(target.request, node_record_checked=True)
                record = await self._send(
                    msgspec.structs.replace(target, request=checked),
                    delivery=delivery,
                    looked_up=looked_up,
                )
                if record is None:
                    return Disposition.RETRY
            return await self._conclude(order, target.payment_hash, record)
        except NodeUnreachable as exc:
            log.warning("node_unreachable", detail=str(exc)[:200], delivery=delivery)
            return Disposition.RETRY

    async def _send(
        self, target: PayTarget, *, delivery: int, looked_up: bool
    ) -> PaymentResult | None:
        """The node's answer to a send; ``None`` if the decision must wait for a redelivery."""
        result: PaymentResult | None = None
        log.info("payment_sending", delivery=delivery)
        failpoint("executor.before_send")
        try:
            async with asyncio.timeout(target.request.timeout_s + self._limits.pay_grace_s):
                result = await self._node.pay(target.request)
                failpoint("executor.after_send")
        except (NodeError, TimeoutError) as exc:
            log.warning("payment_send_error", error=type(exc).__name__, detail=str(exc)[:200])
        except ValueError as exc:
            log.error("payment_request_refused", detail=str(exc)[:200])
            result = PaymentFailed(
                payment_hash=target.payment_hash,
                reason=FailureReason.INCORRECT_DETAILS,
                detail=str(exc),
            )
        if isinstance(result, PaymentSucceeded | PaymentInFlight):
            return result
        if not looked_up:
            # The node's own answer to this send is evidence; a record read now is not (it
            # may be older than the send). Decide on the redelivery, which looks first.
            return result if isinstance(result, PaymentFailed) else None
        # A failure, or no answer at all: only the node's record can tell what happened.
        record = await self._lookup(target.payment_hash)
        if record is not None:
            return record
        if result is not None:
            return result  # refused before the node registered anything: proven unpaid
        if delivery < self._limits.send_deliveries_max:
            return None
        return PaymentFailed(
            payment_hash=target.payment_hash,
            reason=FailureReason.NODE_UNAVAILABLE,
            detail=f"node refused to send {delivery} times",
        )

    async def _conclude(
        self, order: WorkOrder, payment_hash: str, record: PaymentResult
    ) -> Disposition:
        if isinstance(record, PaymentInFlight):
            await self._report(order, outcomes.in_flight(order, payment_hash))
            final = await self._track(payment_hash)
            if final is None:
                log.info("payment_still_in_flight")
                return Disposition.RETRY
            record = final
        if isinstance(record, PaymentSucceeded):
            log.info("payment_succeeded", fee_msat=record.fee_msat)
            await self._report(order, outcomes.succeeded(order, record))
        else:
            assert isinstance(record, PaymentFailed)
            log.info("payment_failed", reason=str(record.reason))
            await self._report(order, outcomes.failed_with_proof(order, payment_hash, record))
        failpoint("executor.after_outcome")
        return Disposition.DONE

    async def _lookup(self, payment_hash: str) -> PaymentResult | None:
        limits = self._limits
        for attempt in range(1, limits.node_lookup_attempts_max + 1):
            try:
                return await self._node.lookup_payment(payment_hash)
            except NodeError as exc:
                if attempt == limits.node_lookup_attempts_max:
                    raise NodeUnreachable(str(exc)) from None
            await asyncio.sleep(limits.node_backoff_s_first * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _track(self, payment_hash: str) -> PaymentResult | None:
        """The final record, or ``None`` if still in flight after ``track_s_max``."""
        deadline_s = asyncio.get_running_loop().time() + self._limits.track_s_max
        while (remaining_s := deadline_s - asyncio.get_running_loop().time()) > 0:
            try:
                async with asyncio.timeout(remaining_s):
                    async for update in self._node.payment_updates(payment_hash):
                        if not isinstance(update, PaymentInFlight):
                            return update
            except TimeoutError:
                return None
            except NodeError as exc:
                log.info("payment_updates_broken", detail=str(exc)[:200])
            await asyncio.sleep(min(self._limits.track_poll_s, max(remaining_s, 0)))
            try:
                polled = await self._node.lookup_payment(payment_hash)
            except NodeError:
                continue
            if polled is not None and not isinstance(polled, PaymentInFlight):
                return polled
        return None
