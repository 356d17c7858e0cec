"""A flood of submits carrying ``\\u0000`` (in the idempotency key or in metadata) mixed into a
steady honest load, over request/reply and over the ``CORRIDOR_CMD`` stream. PostgreSQL
cannot store the character in text or jsonb; the edge must refuse it with a code, and no
honest command may fail, be dead-lettered or be stranded because it shared a batch with it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import asyncpg

from services.bus import subjects
from services.bus.jetstream import connect
from services.engine.ids import intent_id_for
from tests.faults.drill import INTENTS, drive, honest_bodies
from tests.faults.harness import CALLER, Harness
from tests.faults.load import REQUEST_TIMEOUT_S, WINDOW, invoices, submit_body

POISONED = 30  # over request/reply, half in the key, half in metadata
STREAMED = 10  # over CORRIDOR_CMD: as many honest as poisoned


def poisoned(tag: str, invoice: str, i: int) -> dict[str, Any]:
    """The ``i``-th invoice's submit with a NUL in its key (odd ``i``) or in its metadata."""
    if i % 2:
        return submit_body(f"{tag}-{i:04d}-nul\u0000key", invoice, i)
    return submit_body(f"{tag}-{i:04d}", invoice, i, metadata={"note": "nul\u0000here"})


async def test_nul_flood(harness: Harness) -> None:
    await harness.start()
    made = await invoices(harness.sim_endpoints()["nodes"], "poison", POISONED + 2 * STREAMED)
    # Each body's amount follows its invoice's index (load.amount_msat), as the invoice says.
    flood = [poisoned("nul-rr", made[i], i) for i in range(POISONED)]
    streamed_poison = [poisoned("nul-js", made[i], i) for i in range(POISONED, POISONED + STREAMED)]
    streamed_honest = [
        submit_body(f"honest-js-{i:04d}", made[i], i)
        for i in range(POISONED + STREAMED, POISONED + 2 * STREAMED)
    ]
    codes: Counter[str] = Counter()
    stream_acked: list[str] = []

    async def fault() -> None:
        nc = await connect(harness.stack.nats_url, name="drill-flood", creds=harness.caller_creds)
        try:
            await _flood(nc, flood, codes)
            js = nc.jetstream()
            for body in [
                b for pair in zip(streamed_poison, streamed_honest, strict=True) for b in pair
            ]:
                await js.publish(
                    f"{subjects.CMD_PREFIX}.submit.{CALLER}",
                    json.dumps(body).encode(),
                    timeout=REQUEST_TIMEOUT_S,
                )
                if body in streamed_honest:
                    stream_acked.append(intent_id_for(CALLER, body["idempotency_key"]))
        finally:
            await nc.close()

    bodies = await honest_bodies(harness, "honest-rr", INTENTS)
    notes: dict[str, object] = {"poison_replies": codes}
    outcome = await drive(
        harness,
        "nul-flood",
        fault=fault,
        fault_after=None,
        bodies=bodies,
        notes=notes,
        extra_accepted=stream_acked,
    )
    honest_internal = sum(s.retried_codes.count("internal_error") for s in outcome.submits)
    assert codes["ok"] == 0 and codes["internal_error"] == 0, f"poisoned submits: {codes}"
    assert honest_internal == 0, f"{honest_internal} honest submits failed with internal_error"
    assert (
        await _in_log(
            harness, [intent_id_for(CALLER, b["idempotency_key"]) for b in streamed_poison]
        )
        == 0
    )
    outcome.verdict.assert_holds()


async def _flood(nc: Any, bodies: list[dict[str, Any]], codes: Counter[str]) -> None:
    """Each poisoned submit once (a refusal is the answer), ``WINDOW`` at a time."""
    jobs = iter(bodies)

    async def worker() -> None:
        for body in jobs:
            msg = await nc.request(
                f"{subjects.API_PREFIX}.submit.{CALLER}",
                json.dumps(body).encode(),
                timeout=REQUEST_TIMEOUT_S,
            )
            reply = json.loads(msg.data)
            codes["ok" if reply.get("ok") else reply["error"]["code"]] += 1

    await asyncio.gather(*(worker() for _ in range(WINDOW)))


async def _in_log(harness: Harness, intent_ids: list[str]) -> int:
    conn = await asyncpg.connect(harness.auditor_url)
    try:
        found = await conn.fetchval(
            "SELECT count(DISTINCT stream_id) FROM events WHERE stream_id = ANY($1::text[])",
            intent_ids,
        )
        return int(found)
    finally:
        await conn.close()
