"""End to end: intents from submit to settled, through the engine in its own process, the
region executors, and the simulated network with zero hop delay (so Corridor is measured)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

from services.bench.stats import percentile
from services.lightning.factory import adapter_from_uri
from services.lightning.port import NodePort, PaymentSucceeded, PayRequest

MERCHANTS_USED = 20
CORRIDORS = ("us-eu", "eu-asia", "us-asia")


@dataclass
class E2eRun:
    intents: int
    seconds: float
    settled: int
    submit_latency_ms: list[float] = field(default_factory=list)

    @property
    def settled_per_s(self) -> float:
        return self.settled / self.seconds if self.seconds else 0.0


class InvoiceSource:
    """Merchant invoices asked from the merchants' own node APIs (the sim runs elsewhere)."""

    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        merchants = sorted((n for n in nodes if n["role"] == "merchant"), key=lambda n: n["name"])[
            :MERCHANTS_USED
        ]
        self._adapters: list[NodePort] = [adapter_from_uri(n["endpoint"]) for n in merchants]

    async def bodies(self, tag: str, count: int, window: int = 32) -> list[bytes]:
        invoices = await self.invoices(tag, count, window)
        return [_body(invoice, tag, i) for i, invoice in enumerate(invoices)]

    async def invoices(self, tag: str, count: int, window: int = 32) -> list[str]:
        out = [""] * count

        async def one(i: int) -> None:
            out[i] = await self._invoice(tag, i)

        await in_window(one, count, window)
        return out

    async def _invoice(self, tag: str, i: int) -> str:
        merchant = self._adapters[i % len(self._adapters)]
        invoice = await merchant.create_invoice(_amount_msat(i), f"bench {tag} {i}", 3600)
        return invoice.payment_request

    async def close(self) -> None:
        for adapter in self._adapters:
            await adapter.close()


def _amount_msat(i: int) -> int:
    return 10_000 + (i % 50) * 1_000  # auto tier for a service caller


def _body(payment_request: str, tag: str, i: int) -> bytes:
    return json.dumps(
        {
            "type": "SubmitPaymentIntent",
            "version": 1,
            "idempotency_key": f"{tag}-{i}",
            "caller": {"id": "bench", "kind": "service"},
            "corridor": CORRIDORS[i % len(CORRIDORS)],
            "amount_msat": _amount_msat(i),
            "max_fee_msat": 10_000,
            "payment_request": payment_request,
        }
    ).encode()


async def pay_directly(
    nodes: list[dict[str, Any]],
    invoices: list[str],
    *,
    window: int,
    latencies_ms: list[float] | None = None,
    gap_s: float = 0.0,
) -> float:
    """Pay ``invoices`` from our own lnd nodes through the production adapter, with nothing of
    Corridor in between: the simulated network's own cost. Returns the seconds taken."""
    payers: list[NodePort] = [
        adapter_from_uri(n["endpoint"])
        for n in sorted(nodes, key=lambda n: n["name"])
        if n["role"] == "ours" and n["implementation"] == "lnd"
    ]
    failed: list[str] = []

    async def one(i: int) -> None:
        request = PayRequest(payment_request=invoices[i], max_fee_msat=10_000, timeout_s=30.0,
                             node_record_checked=True)  # fmt: skip
        sent = time.perf_counter()
        result = await payers[i % len(payers)].pay(request)
        if latencies_ms is not None:
            latencies_ms.append((time.perf_counter() - sent) * 1000)
        if not isinstance(result, PaymentSucceeded):
            failed.append(repr(result)[:200])
        if gap_s:
            await asyncio.sleep(gap_s)  # pacing, as the 10 intents/s run does

    began = time.perf_counter()
    try:
        await in_window(one, len(invoices), window)
    finally:
        for payer in payers:
            await payer.close()
    if failed:
        raise RuntimeError(f"{len(failed)} direct payments did not succeed, first: {failed[0]}")
    return time.perf_counter() - began


async def in_window(job: Callable[[int], Awaitable[None]], count: int, window: int) -> None:
    """``job(0) .. job(count - 1)``, at most ``window`` at a time, by ``window`` workers.

    Workers rather than a semaphore: the load generator shares its process with the executors,
    and Python 3.11's ``Semaphore.acquire`` scans every waiter (thousands here) on each call.
    """
    jobs = iter(range(count))

    async def worker() -> None:
        for i in jobs:
            await job(i)

    await asyncio.gather(*(worker() for _ in range(min(window, count))))


async def run_closed_loop(
    nc: Client,
    bodies: list[bytes],
    *,
    window: int,
    settled: asyncio.Queue[str],
    timeout_s: float = 120.0,
) -> E2eRun:
    """Submit ``bodies`` with at most ``window`` requests open; time until all settled.

    The invoices are made beforehand, so neither the time nor the CPU figures include them.
    """
    intents = len(bodies)
    submit_ms: list[float] = []
    ids: set[str] = set()

    async def one(i: int) -> None:
        began = time.perf_counter()
        msg = await nc.request("corridor.api.v1.intents.submit.bench", bodies[i], timeout=60)
        submit_ms.append((time.perf_counter() - began) * 1000)
        reply = json.loads(msg.data)
        if reply.get("ok"):
            ids.add(reply["intent_id"])

    began = time.perf_counter()
    submitting = asyncio.ensure_future(in_window(one, intents, window))
    done: set[str] = set()
    deadline = began + timeout_s
    while True:
        if submitting.done() and ids and done >= ids:
            break
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        try:
            done.add(await asyncio.wait_for(settled.get(), timeout=min(remaining, 1.0)))
        except TimeoutError:
            continue
    await submitting
    elapsed = time.perf_counter() - began
    return E2eRun(intents=intents, seconds=elapsed, settled=len(done & ids),
                  submit_latency_ms=sorted(submit_ms))  # fmt: skip


def open_loop_count(rate_per_s: float, duration_s: float) -> int:
    return max(1, int(rate_per_s * duration_s))


async def run_open_loop(
    nc: Client,
    bodies: list[bytes],
    *,
    rate_per_s: float,
    settled_at: dict[str, float],
) -> dict[str, Any]:
    """Offer a fixed rate; latency is submit to the `IntentSettled` event arriving.

    ``sent_wall_ms`` (popped by the caller) holds each intent's submit time on the wall clock,
    to set beside the engine's ``recorded_at_ms`` for a per-stage breakdown.
    """
    sent_at: dict[str, float] = {}
    sent_wall_ms: dict[str, float] = {}
    interval = 1.0 / rate_per_s
    began = time.perf_counter()
    tasks = []

    async def one(body: bytes) -> None:
        t0, wall_ms = time.perf_counter(), time.time() * 1000
        msg = await nc.request("corridor.api.v1.intents.submit.bench", body, timeout=60)
        reply = json.loads(msg.data)
        if reply.get("ok"):
            sent_at[reply["intent_id"]] = t0
            sent_wall_ms[reply["intent_id"]] = wall_ms

    for i, body in enumerate(bodies):
        target = began + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing an open-loop load, not synchronisation
        tasks.append(asyncio.create_task(one(body)))
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 60
    while any(i not in settled_at for i in sent_at) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)  # poll until the event subscriber has seen every settlement
    latencies = sorted((settled_at[i] - t) * 1000 for i, t in sent_at.items() if i in settled_at)
    return {
        "unsettled_ids": sorted(i for i in sent_at if i not in settled_at),
        "sent_wall_ms": sent_wall_ms,
        "offered_per_s": round(rate_per_s, 1),
        "intents": len(sent_at),
        "settled": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }
