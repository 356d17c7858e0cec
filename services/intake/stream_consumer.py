"""Fire-and-forget commands from JetStream ``CORRIDOR_CMD``, with explicit acks and a DLQ.

A message is acked only after its command is committed, or after it was dead-lettered with
its error. A dependency outage naks with a delay, so nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from schemas import errors
from schemas.common import ErrorDetail
from schemas.replies import CommandRejected
from services.bus import subjects
from services.bus.port import Bus, Delivery, Durable
from services.engine.processor import CommandProcessor
from services.intake.identity import Authenticator
from services.intake.parsing import parse_command

log = structlog.get_logger("corridor.cmd_consumer")

FETCH_BATCH_MAX = 256
# After this many deliveries a message that keeps failing unexpectedly is dead-lettered.
DELIVERIES_MAX = 10
NAK_DELAY_S = 1.0
# JetStream redelivers a command not settled within this (a crash mid-command).
ACK_WAIT_S = 30.0
# nats-py's default JetStream publish timeout, which the dead-letter publish always had.
DEAD_LETTER_TIMEOUT_S = 5.0


class CommandStreamConsumer:
    def __init__(
        self,
        bus: Bus,
        processor: CommandProcessor,
        *,
        authenticator: Authenticator | None = None,
    ) -> None:
        self._bus = bus
        self._processor = processor
        # Publishing on the command stream is permitted per credential too: the subject's last
        # token is the sender, exactly as on the request/reply subjects (ADR 0061).
        self._auth = authenticator or Authenticator(None)
        self.dead_lettered = 0
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        """Consume until stopped; a lost connection or a deleted consumer is retried."""
        while not self._stopping:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cmd_consumer_failed", error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(NAK_DELAY_S)  # back-off before binding again

    async def _consume(self) -> None:
        consumer = await self._bus.consumer(
            Durable(
                stream=subjects.CMD_STREAM,
                name=subjects.CMD_CONSUMER,
                filter_subject=subjects.CMD_WILDCARD,
                ack_wait_s=ACK_WAIT_S,
                max_ack_pending=FETCH_BATCH_MAX * 8,
            )
        )
        try:
            # nats-py's fetch can turn a cancellation into its own TimeoutError, so the loop
            # also watches a stop flag instead of relying on cancellation alone.
            while not self._stopping:
                try:
                    msgs = await consumer.fetch(FETCH_BATCH_MAX, timeout_s=1.0)
                except TimeoutError:
                    continue
                await asyncio.gather(*(self._handle(m) for m in msgs))
        finally:
            await consumer.close()

    async def _handle(self, msg: Delivery) -> None:
        try:
            envelope = parse_command(
                msg.subject, subjects.CMD_PREFIX, msg.data, msg.headers, authenticator=self._auth
            )
        except errors.CorridorError as exc:
            await self._dead_letter(msg, exc.detail())
            return
        try:
            reply = await self._processor.execute(envelope)
        except Exception:
            log.exception("cmd_internal_error", subject=msg.subject)
            if msg.num_delivered >= DELIVERIES_MAX:
                detail = ErrorDetail(code="internal_error", message="failed repeatedly")
                await self._dead_letter(msg, detail)
            else:
                await msg.nak(NAK_DELAY_S)
            return
        if isinstance(reply, CommandRejected):
            if reply.error.code == errors.Unavailable.code:
                await msg.nak(NAK_DELAY_S)
                return
            await self._dead_letter(msg, reply.error)
            return
        await msg.ack()

    async def _dead_letter(self, msg: Delivery, error: ErrorDetail) -> None:
        suffix = msg.subject.removeprefix("corridor.cmd.v1.")
        # The command's own headers travel with it (an agent's signature, ADR 0066), so that
        # `corridor dlq replay` puts back exactly what was sent; not its message id, which
        # would make the dead-letter stream's duplicate window swallow a second dead letter.
        kept = {k: v for k, v in (msg.headers or {}).items() if k != subjects.HDR_MSG_ID}
        headers = {
            **kept,
            subjects.HDR_ERROR_CODE: error.code,
            subjects.HDR_ERROR_MESSAGE: error.message[:500],
            subjects.HDR_ORIGINAL_SUBJECT: msg.subject,
        }
        if error.field:
            headers[subjects.HDR_ERROR_FIELD] = error.field
        try:
            await self._bus.publish(
                f"{subjects.DLQ_PREFIX}.{suffix}",
                msg.data,
                headers=headers,
                timeout_s=DEAD_LETTER_TIMEOUT_S,
            )
        except Exception:
            # Not dead-lettered, so not acked: it will be redelivered.
            log.warning("dead_letter_failed", subject=msg.subject)
            with contextlib.suppress(Exception):
                await msg.nak(NAK_DELAY_S)
            return
        self.dead_lettered += 1
        log.info("dead_lettered", subject=msg.subject, code=error.code, field=error.field)
        await msg.ack()
