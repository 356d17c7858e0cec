"""The drills' steady load: a seeded, ordered list of payment intents, submitted as a careful
client submits them, with a fault hook that fires after the N-th acceptance.

Invoices come from the simulated merchants' own node APIs, as the bench makes them
(``services.bench.e2e.InvoiceSource``); amounts and idempotency keys follow the index. A
submit is retried with the same idempotency key until the engine gives a definite answer:
on a timeout, no responders, a lost connection, or a refusal coded ``unavailable`` or
``internal_error``. So "accepted" means what a client can rely on: a reply with ``ok``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import nats.errors
from nats.aio.client import Client

from services.bench.e2e import InvoiceSource
from services.bus import subjects
from tests.faults.harness import CALLER, CORRIDOR

RETRYABLE_CODES: Final = frozenset({"unavailable", "internal_error"})
REQUEST_TIMEOUT_S: Final = 5.0
# A submit that gets no definite answer for this long is a finding, not a slow machine.
SUBMIT_DEADLINE_S: Final = 90.0
BACKOFF_S_FIRST: Final = 0.1
BACKOFF_S_MAX: Final = 1.0
# Intents open at once: a steady stream with every stage busy, small enough that a fault
# meets intents in each state rather than one burst.
WINDOW: Final = 4

Fault = Callable[[], Awaitable[Any]]


def amount_msat(i: int) -> int:
    return 10_000 + (i % 50) * 1_000  # the auto tier for a service caller


def submit_body(key: str, invoice: str, i: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "SubmitPaymentIntent",
        "version": 1,
        "idempotency_key": key,
        "caller": {"id": CALLER, "kind": "service"},
        "corridor": CORRIDOR,
        "amount_msat": amount_msat(i),
        "max_fee_msat": 10_000,
        "payment_request": invoice,
        **extra,
    }


@dataclass
class Submit:
    """What happened to one submit: accepted with an intent id, or refused with a code."""

    key: str
    intent_id: str | None = None
    refused: str | None = None
    # Refusals retried before the definite answer, by code (internal_error: another's fault).
    retried_codes: list[str] = field(default_factory=list)
    transport_retries: int = 0


async def invoices(nodes: list[dict[str, Any]], tag: str, count: int) -> list[str]:
    source = InvoiceSource(nodes)
    try:
        return await source.invoices(tag, count, window=8)
    finally:
        await source.close()


async def submit(nc: Client, body: dict[str, Any]) -> Submit:
    """One submit over request/reply, retried until a definite answer (or the deadline)."""
    result = Submit(key=body["idempotency_key"])
    data = json.dumps(body).encode()
    deadline = time.monotonic() + SUBMIT_DEADLINE_S
    backoff_s = BACKOFF_S_FIRST
    while time.monotonic() < deadline:
        try:
            msg = await nc.request(
                f"{subjects.API_PREFIX}.submit.{CALLER}", data, timeout=REQUEST_TIMEOUT_S
            )
            reply = json.loads(msg.data)
        except (nats.errors.Error, TimeoutError, OSError):
            result.transport_retries += 1
        else:
            if reply.get("ok"):
                result.intent_id = reply["intent_id"]
                return result
            code = reply["error"]["code"]
            if code not in RETRYABLE_CODES:
                result.refused = code
                return result
            result.retried_codes.append(code)
        await asyncio.sleep(backoff_s)  # a client's retry backoff, not synchronisation
        backoff_s = min(backoff_s * 2, BACKOFF_S_MAX)
    result.refused = "no_definite_answer"
    return result


async def run_load(
    nc: Client,
    bodies: list[dict[str, Any]],
    *,
    fault_after: int | None = None,
    fault: Fault | None = None,
    accepted: list[str] | None = None,
    pause_s: float = 0.0,
) -> list[Submit]:
    """Submit ``bodies`` in order, ``WINDOW`` at a time; ``fault()`` starts once
    ``fault_after`` of them are accepted (or at once when ``fault_after`` is None) and runs
    beside the load, which goes on through it. Returns when both are done. ``accepted`` gets
    each intent id as it is accepted (for a fault that wants to know what is in motion).
    ``pause_s``: each of the ``WINDOW`` clients waits this long between its submits, so a
    load of faults in turn meets every fault with intents still arriving."""
    results: list[Submit | None] = [None] * len(bodies)
    accepted_count = 0
    fault_task: asyncio.Task[Any] | None = None

    def start_fault() -> None:
        nonlocal fault_task
        if fault is not None and fault_task is None:
            fault_task = asyncio.create_task(fault(), name="drill-fault")

    if fault_after is None:
        start_fault()
    jobs = iter(range(len(bodies)))

    async def worker() -> None:
        nonlocal accepted_count
        for i in jobs:
            result = results[i] = await submit(nc, bodies[i])
            if result.intent_id is not None:
                accepted_count += 1
                if accepted is not None:
                    accepted.append(result.intent_id)
                if fault_after is not None and accepted_count >= fault_after:
                    start_fault()
            if pause_s:
                await asyncio.sleep(pause_s)  # the load's pace, not synchronisation

    await asyncio.gather(*(worker() for _ in range(WINDOW)))
    if fault_task is not None:
        await fault_task
    assert fault is None or fault_task is not None, "the fault never started"
    return [r for r in results if r is not None]
