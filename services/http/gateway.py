"""The HTTP API's link to the engine: one NATS connection, as the ``gateway`` credential
(ADR 0172), forwarding each command under the subject token of the identity the API key
proved. The engine judges it exactly as if that identity had sent it over NATS: idempotency,
``identity_mismatch``, the two-person rule, policy.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

import nats.errors
import structlog
from nats.aio.client import Client

from services import tracing
from services.http.errors import ApiError, refusal
from services.http.limits import ENGINE_TIMEOUT_S, RETRY_AFTER_S

log = structlog.get_logger("corridor.http")


def unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message, headers={"Retry-After": str(RETRY_AFTER_S)})


# The request's `traceparent` header, if valid: set by the API key middleware for the request.
INCOMING_TRACEPARENT: ContextVar[str | None] = ContextVar("incoming_traceparent", default=None)


class Gateway:
    def __init__(self, nc: Client, *, timeout_s: float = ENGINE_TIMEOUT_S) -> None:
        self._nc = nc
        self._timeout_s = timeout_s

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    async def ask(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        """The engine's reply to ``body`` on ``subject``, ``ok`` true or false; 503 if no
        engine answers in time (the command may or may not have been committed: a retry with
        the same Idempotency-Key is safe)."""
        # A request that came with W3C trace context continues it over NATS (ADR 0154).
        incoming = INCOMING_TRACEPARENT.get()
        try:
            with tracing.child_span(
                "corridor.http.forward", incoming, {"corridor.subject": subject}
            ) as traceparent:
                headers = {tracing.TRACEPARENT: traceparent} if traceparent else None
                msg = await self._nc.request(
                    subject, json.dumps(body).encode(), timeout=self._timeout_s, headers=headers
                )
        except nats.errors.NoRespondersError:
            raise unavailable("no engine answers; retry later") from None
        except nats.errors.TimeoutError:
            log.warning("http_engine_timeout", subject=subject)
            raise unavailable("the engine did not answer in time; retry later") from None
        except nats.errors.Error as exc:
            # Closed, reconnecting, a full outbound buffer: the link to NATS, not the request.
            log.warning("http_nats_unavailable", subject=subject, error=type(exc).__name__)
            raise unavailable("not connected to the engine; retry later") from None
        reply = json.loads(msg.data)
        if not isinstance(reply, dict):
            raise unavailable("the engine's reply was not an object")
        return reply

    async def command(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        """``ask``, with a refusal raised as the matching HTTP error."""
        reply = await self.ask(subject, body)
        if not reply.get("ok"):
            raise refusal(reply)
        return reply
