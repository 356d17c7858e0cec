"""The drills' ledger check: the event log against the simulated network's own ledger.

The network's ledger (the sim control socket's ``payments``: every attempt any node made) is
ground truth for money; the log is what Corridor believes. The check holds when no invoice
hash was paid twice, every accepted intent is in the log and at rest (terminal, or in the
operator exception queue on evidence), and an intent is settled exactly when it was paid.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg

from projections.exceptions import build as exception_queue
from services.domain.intent.transitions import TERMINAL_STATUSES, next_status
from services.eventstore.roles import connect
from services.sim.jsonrpc import call_unix

# Only evidence puts an intent in the exception queue here, never its age.
STUCK_NEVER_MS: Final = 2**62
CONTROL_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.25

_EVENTS: Final = """
SELECT stream_id, type, schema_version, payload::text AS payload,
       (extract(epoch FROM recorded_at) * 1000)::bigint AS recorded_at_ms
  FROM events WHERE stream_id = ANY($1::text[]) ORDER BY position"""


@dataclass
class LedgerCheck:
    accepted: int
    statuses: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    not_at_rest: int = 0
    in_exception_queue: int = 0
    double_payments: int = 0
    paid_not_settled: int = 0
    settled_not_paid: int = 0

    @property
    def at_rest(self) -> bool:
        return not self.lost and not self.not_at_rest

    @property
    def holds(self) -> bool:
        return (
            self.at_rest
            and not self.double_payments
            and not self.paid_not_settled
            and not self.settled_not_paid
        )

    def summary(self) -> dict[str, Any]:
        return {
            "holds": self.holds,
            "accepted": self.accepted,
            "statuses": dict(sorted(self.statuses.items())),
            "lost": self.lost,
            "not_at_rest": self.not_at_rest,
            "in_exception_queue": self.in_exception_queue,
            "double_payments": self.double_payments,
            "paid_not_settled": self.paid_not_settled,
            "settled_not_paid": self.settled_not_paid,
        }


async def recorded_events(database_url: str, intents: list[str]) -> list[dict[str, Any]]:
    """The intents' events as the projections read them (type, version, stream, data, time)."""
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(_EVENTS, intents)
    finally:
        await conn.close()
    return [
        {
            "type": r["type"],
            "version": r["schema_version"],
            "stream_id": r["stream_id"],
            "data": json.loads(r["payload"]),
            "recorded_at_ms": r["recorded_at_ms"],
        }
        for r in rows
    ]


async def check(database_url: str, control: Path, accepted: list[str]) -> LedgerCheck:
    result = LedgerCheck(accepted=len(accepted))
    events = await recorded_events(database_url, accepted)
    status: dict[str, Any] = {}
    hash_of: dict[str, str] = {}
    for event in events:
        intent = event["stream_id"]
        status[intent] = next_status(status.get(intent), event["type"])
        if event["type"] == "IntentReceived":
            hash_of[intent] = (event["data"].get("invoice") or {}).get("payment_hash", "")
    queue = {
        i["intent_id"] for i in exception_queue(events, now_ms=0, stuck_after_ms=STUCK_NEVER_MS)
    }
    payments = await call_unix(control, "payments", {}, timeout_s=CONTROL_TIMEOUT_S)
    succeeded = Counter(p["payment_hash"] for p in payments if p["status"] == "succeeded")
    result.double_payments = sum(n - 1 for n in succeeded.values() if n > 1)
    for intent in accepted:
        if status.get(intent) is None:
            result.lost += 1
            continue
        state = str(status[intent])
        result.statuses[state] += 1
        if intent in queue:
            result.in_exception_queue += 1
        elif status[intent] not in TERMINAL_STATUSES:
            result.not_at_rest += 1
        paid = succeeded[hash_of.get(intent, "")] > 0
        result.paid_not_settled += paid and state != "settled"
        result.settled_not_paid += state == "settled" and not paid
    return result


async def wait_for_rest(
    database_url: str, control: Path, accepted: list[str], *, timeout_s: float
) -> LedgerCheck:
    """The check once every accepted intent is at rest, or at the deadline (the caller reads
    ``holds``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = await check(database_url, control, accepted)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            result = None  # the database or the sim is busy or coming back: ask again
        if result is not None and (result.at_rest or time.monotonic() > deadline):
            return result
        if result is None and time.monotonic() > deadline:
            raise TimeoutError("the log or the simulated network could not be read in time")
        await asyncio.sleep(POLL_S)  # a poll interval, not synchronisation
