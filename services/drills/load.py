"""A steady load for a drill: invoice payments submitted a few at a time while the drill acts.

Invoices come from the simulated merchants' own node APIs (``services.bench.e2e``), amounts
and idempotency keys follow the index (a rerun with the same tag is the same load). A submit is
retried with the same idempotency key until the engine answers definitely, as a careful client
does, so "accepted" means a reply with ``ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Final

import nats.errors
from nats.aio.client import Client

from services.bench.e2e import InvoiceSource
from services.bus import subjects
from services.drills.target import Target

RETRYABLE_CODES: Final = frozenset({"unavailable", "internal_error"})
REQUEST_TIMEOUT_S: Final = 5.0
# A submit with no definite answer for this long is given up and counted, not waited on.
SUBMIT_DEADLINE_S: Final = 90.0
BACKOFF_S_FIRST: Final = 0.1
BACKOFF_S_MAX: Final = 1.0
# Intents open at once: every stage busy, never one burst.
WINDOW: Final = 4
# Submits per second. A drill needs traffic spread over its phases (intents routed before, during
# and after a fault), not a burst that is all accepted and routed in the first second.
RATE_PER_S_DEFAULT: Final = 5.0
RATE_PER_S_MAX: Final = 1_000.0
# Invoices asked for at once from the merchants' nodes.
INVOICE_WINDOW: Final = 8
# A drill's load is small by design: it proves behaviour under load, it is not a benchmark.
INTENTS_MAX: Final = 10_000
# Fee budget per payment; the simulated network's fees are well below it.
MAX_FEE_MSAT: Final = 10_000


def amount_msat(i: int) -> int:
    return 10_000 + (i % 50) * 1_000  # the auto tier for a service caller


@dataclass
class SteadyLoad:
    """``count`` payments at ``rate_per_s``, at most ``WINDOW`` open at a time, from
    ``start()`` until done or ``stop()``."""

    target: Target
    tag: str
    count: int
    nc: Client
    rate_per_s: float = RATE_PER_S_DEFAULT
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        assert 1 <= self.count <= INTENTS_MAX, f"1..{INTENTS_MAX} intents"
        assert 0 < self.rate_per_s <= RATE_PER_S_MAX, f"0..{RATE_PER_S_MAX} submits/s"

    async def start(self) -> None:
        source = InvoiceSource(self.target.sim_nodes)
        try:
            invoices = await source.invoices(self.tag, self.count, window=INVOICE_WINDOW)
        finally:
            await source.close()
        self._task = asyncio.create_task(self._run(invoices), name=f"drill-load-{self.tag}")

    async def wait_accepted(self, n: int, *, timeout_s: float) -> bool:
        """True once ``n`` intents are accepted (polls a local counter)."""
        deadline = time.monotonic() + timeout_s
        while len(self.accepted) < n:
            if time.monotonic() > deadline or (self._task is not None and self._task.done()):
                return len(self.accepted) >= n
            await asyncio.sleep(0.05)  # a poll interval, not synchronisation
        return True

    def stop(self) -> None:
        """Submit nothing new; submits in flight finish."""
        self._stop.set()

    async def done(self) -> None:
        if self._task is not None:
            await self._task

    async def cancel(self) -> None:
        """End the load now (a drill that stops early): submits in flight are abandoned, and
        whatever they got accepted stays in the log, as a client that went away leaves it."""
        self._stop.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def body(self, i: int, invoice: str) -> dict[str, Any]:
        return {
            "type": "SubmitPaymentIntent",
            "version": 1,
            "idempotency_key": f"{self.tag}-{i:05d}",
            "caller": {"id": self.target.caller_id, "kind": "service"},
            "corridor": self.target.corridor,
            "amount_msat": amount_msat(i),
            "max_fee_msat": MAX_FEE_MSAT,
            "payment_request": invoice,
        }

    async def _run(self, invoices: list[str]) -> None:
        jobs = iter(enumerate(invoices))
        began = time.monotonic()

        async def worker() -> None:
            for i, invoice in jobs:
                # Pacing: submit i is due i / rate seconds in (a rate, not synchronisation).
                due = began + i / self.rate_per_s
                if (wait_s := due - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), wait_s)
                if self._stop.is_set():
                    return
                await self._submit(self.body(i, invoice))

        await asyncio.gather(*(worker() for _ in range(WINDOW)))

    async def _submit(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        subject = f"{subjects.API_PREFIX}.submit.{self.target.caller_id}"
        deadline = time.monotonic() + SUBMIT_DEADLINE_S
        backoff_s = BACKOFF_S_FIRST
        code = "no_definite_answer"
        while time.monotonic() < deadline:
            try:
                reply = json.loads((await self.nc.request(subject, data, REQUEST_TIMEOUT_S)).data)
            except (nats.errors.Error, TimeoutError, OSError):
                self.retried += 1
            else:
                if reply.get("ok"):
                    self.accepted.append(str(reply["intent_id"]))
                    return
                code = str(reply["error"]["code"])
                if code not in RETRYABLE_CODES:
                    break
                self.retried += 1
            await asyncio.sleep(backoff_s)  # a client's retry backoff, not synchronisation
            backoff_s = min(backoff_s * 2, BACKOFF_S_MAX)
        self.refused[code] = self.refused.get(code, 0) + 1
