"""Rebalances as a drill's load, and their verdict against the simulated network's ledger.

The planner's requests (``RequestRebalance`` as the drill's service caller) move funds
between the drill's two LND nodes, each asked twice with one key. The verdict is the
simulation's (``services/simulation/rebalances.py``, ADR 0282) over what the real processes
left: the events of the rebalances and their day budgets (read as the auditor role) and the
network's ledger (the sim control socket's ``payments``). Only rebalances pay between our
nodes here, so every succeeded payment between them must belong to one.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Final

import asyncpg
import msgspec
import nats.errors
from nats.aio.client import Client

from schemas.rebalance_messages import (
    REBALANCE_BUDGET_STREAM_PREFIX,
    REBALANCE_STREAM_PREFIX,
)
from services.bus import subjects
from services.eventstore.port import StoredEvent
from services.sim.jsonrpc import call_unix
from services.sim.records import SimPayment
from services.simulation.invariants import Violation
from services.simulation.rebalances import between_ours, rebalance_invariants
from tests.faults.harness import CALLER, NODES, Harness

# Moves of 1,000,000 msat (the auto tier) with max fees that leave room in a region's
# default day budget (100,000 msat) for every one of them.
AMOUNT_MSAT: Final = 1_000_000
MAX_FEE_MSAT: Final = 8_000
REQUEST_TIMEOUT_S: Final = 5.0
# Failure deadlines, as the payment drills' (tests/faults/ledger.py).
ASK_DEADLINE_S: Final = 120.0
REST_DEADLINE_S: Final = 120.0
POLL_S: Final = 0.25
BACKOFF_S: Final = 0.5
RETRYABLE: Final = frozenset({"unavailable", "internal_error"})
ENDED: Final = frozenset({"RebalanceSucceeded", "RebalanceFailed", "RebalanceRejected"})


def bodies(harness: Harness, tag: str, count: int) -> list[dict[str, Any]]:
    """``count`` moves, alternately from the first node to the second and back."""
    pubkeys = {n["name"]: n["pubkey"] for n in harness.sim_endpoints()["nodes"]}
    out = []
    for i in range(count):
        (source_region, source), (target_region, target) = NODES if i % 2 == 0 else NODES[::-1]
        out.append({
            "type": "RequestRebalance", "version": 1, "idempotency_key": f"{tag}-{i:03d}",
            "caller": {"id": CALLER, "kind": "service"}, "mode": "cross_region",
            "source_region": source_region, "source_node": source,
            "target_region": target_region, "target_node": target,
            "destination": pubkeys[target], "amount_msat": AMOUNT_MSAT,
            "max_fee_msat": MAX_FEE_MSAT, "explanation": {"reason": "drill"},
        })  # fmt: skip
    return out


async def request(nc: Client, body: dict[str, Any]) -> str:
    """The rebalance id, asked until a definite answer (the engine may be learning the nodes'
    pubkeys, or PostgreSQL restarting: ``unavailable``)."""
    data = json.dumps(body).encode()
    deadline = time.monotonic() + ASK_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            msg = await nc.request(
                f"{subjects.API_PREFIX}.rebalance.{CALLER}", data, timeout=REQUEST_TIMEOUT_S
            )
            reply = json.loads(msg.data)
        except (nats.errors.Error, TimeoutError, OSError):
            reply = {}
        if reply.get("ok"):
            assert reply["state"] in ("dispatched", "succeeded", "in_flight"), reply
            return str(reply["intent_id"])
        code = (reply.get("error") or {}).get("code", "transport")
        assert code in RETRYABLE or code == "transport", reply
        await asyncio.sleep(BACKOFF_S)  # a client's retry backoff, not synchronisation
    raise AssertionError(f"no definite answer to {body['idempotency_key']}")


async def events(auditor_url: str) -> list[StoredEvent]:
    conn = await asyncpg.connect(auditor_url)
    try:
        rows = await conn.fetch(
            "SELECT position, stream_id, type, payload FROM events "
            "WHERE stream_id LIKE $1 OR stream_id LIKE $2 ORDER BY position",
            f"{REBALANCE_STREAM_PREFIX}%", f"{REBALANCE_BUDGET_STREAM_PREFIX}%",
        )  # fmt: skip
    finally:
        await conn.close()
    return [_stored(row) for row in rows]


def _stored(row: Any) -> StoredEvent:
    """What the invariants read of an event: its position, stream, type and payload."""
    return StoredEvent(
        position=row["position"], event_id="", stream_id=row["stream_id"], stream_version=0,
        type=row["type"], schema_version=1, payload=json.loads(row["payload"]), metadata={},
        recorded_at_ms=0, prev_hash=b"", hash=b"",
    )  # fmt: skip


async def payments(control: Path) -> list[SimPayment]:
    raw = await call_unix(control, "payments", {}, timeout_s=10.0)
    return between_ours(msgspec.convert(raw, list[SimPayment]), [n for _, n in NODES])


async def verdict(harness: Harness, rebalance_ids: list[str]) -> list[Violation]:
    """The invariants once every rebalance ended (or the deadline passed: then the stuck ones
    are in the verdict as ``rebalance_at_rest``)."""
    control = Path(harness.sim_endpoints()["sim_control"])
    deadline = time.monotonic() + REST_DEADLINE_S
    while True:
        try:
            log = await events(harness.auditor_url)
        except (OSError, asyncpg.PostgresError):
            log = None  # the database is coming back: ask again
        if log is not None:
            ended = {e.stream_id for e in log if e.type in ENDED}
            if set(rebalance_ids) <= ended or time.monotonic() > deadline:
                return rebalance_invariants(log, await payments(control), at_rest=True)
        elif time.monotonic() > deadline:
            raise AssertionError("the event log could not be read before the deadline")
        await asyncio.sleep(POLL_S)  # a poll interval, not synchronisation
