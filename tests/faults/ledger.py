"""After a drill: the log against the simulated network's own ledger.

The network's ledger (the sim control socket's ``payments``, every attempt any node made) is
ground truth for money; the event log (read as the auditor role) is what Corridor believes.
A drill passes when no invoice hash was paid twice, every accepted intent is in the log, and
every one of them is at rest: terminal, or in the operator exception queue on evidence.
``wait_for_rest`` waits on that condition with a deadline, and gives up early once nothing has
moved for ``STALL_S``.
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
from services.sim.jsonrpc import call_unix

# An intent not terminal is at rest only in the operator exception queue
# (``projections/exceptions.py``: in doubt with the node's word, a success without proof, an
# anomaly), and only on evidence: never merely for having been on the wire a long time.
STUCK_NEVER_MS: Final = 2**62
# Failure deadlines. Executors retry within seconds (tests/faults/executor_main.py); the
# longest quiet a healthy stack may keep is the relay's wait for acknowledgements JetStream
# lost in a restart (services/relay/outbox.py PUBLISH_ACK_TIMEOUT_S, 30 s). A log and a
# ledger that stay still longer than that while an intent is not at rest are stuck.
REST_DEADLINE_S: Final = 120.0
STALL_S: Final = 40.0
POLL_S: Final = 0.25
CONTROL_TIMEOUT_S: Final = 10.0


@dataclass
class Verdict:
    accepted: int
    statuses: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)  # accepted, not in the log
    not_at_rest: dict[str, str] = field(default_factory=dict)  # intent -> status
    exceptions: Counter[str] = field(default_factory=Counter)  # by the queue's kind
    double_payments: int = 0  # extra successful payments of one hash, network-wide
    paid_not_settled: list[str] = field(default_factory=list)
    settled_not_paid: list[str] = field(default_factory=list)
    network_succeeded: int = 0
    network_failed: int = 0

    @property
    def at_rest(self) -> bool:
        return not self.lost and not self.not_at_rest

    def summary(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "statuses": dict(sorted(self.statuses.items())),
            "lost": len(self.lost),
            "not_at_rest": len(self.not_at_rest),
            "exceptions": dict(sorted(self.exceptions.items())),
            "double_payments": self.double_payments,
            "paid_not_settled": len(self.paid_not_settled),
            "settled_not_paid": len(self.settled_not_paid),
            "network": {"succeeded": self.network_succeeded, "failed": self.network_failed},
        }

    def assert_holds(self) -> None:
        """The three promises, with the counts in the message when one breaks."""
        problems = []
        if self.double_payments:
            problems.append(f"{self.double_payments} double payments")
        if self.lost:
            problems.append(f"{len(self.lost)} accepted intents lost")
        if self.not_at_rest:
            problems.append(f"{len(self.not_at_rest)} intents not at rest")
        if self.paid_not_settled or self.settled_not_paid:
            problems.append(
                f"{len(self.paid_not_settled)} paid but not settled, "
                f"{len(self.settled_not_paid)} settled but not paid"
            )
        assert not problems, "; ".join(problems) + f": {self.summary()}"


async def check(auditor_url: str, control: Path, accepted: list[str]) -> Verdict:
    verdict = Verdict(accepted=len(accepted))
    conn = await asyncpg.connect(auditor_url)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, type, schema_version, payload, "
            "(extract(epoch FROM recorded_at) * 1000)::bigint AS recorded_at_ms "
            "FROM events WHERE stream_id = ANY($1::text[]) ORDER BY position",
            accepted,
        )
    finally:
        await conn.close()
    status: dict[str, Any] = {}
    hash_of: dict[str, str] = {}
    events = []
    for row in rows:
        intent, data = row["stream_id"], json.loads(row["payload"])
        status[intent] = next_status(status.get(intent), row["type"])
        assert status[intent] is not None, f"{intent}: {row['type']} is not a transition"
        if row["type"] == "IntentReceived":
            hash_of[intent] = (data.get("invoice") or {}).get("payment_hash", "")
        events.append(
            {
                "type": row["type"],
                "version": row["schema_version"],
                "stream_id": intent,
                "data": data,
                "recorded_at_ms": row["recorded_at_ms"],
            }
        )
    queue = exception_queue(events, now_ms=0, stuck_after_ms=STUCK_NEVER_MS)
    in_queue = {item["intent_id"]: item["kind"] for item in queue}
    payments = await call_unix(control, "payments", {}, timeout_s=CONTROL_TIMEOUT_S)
    succeeded = Counter(p["payment_hash"] for p in payments if p["status"] == "succeeded")
    verdict.network_succeeded = sum(succeeded.values())
    verdict.network_failed = sum(1 for p in payments if p["status"] == "failed")
    verdict.double_payments = sum(n - 1 for n in succeeded.values() if n > 1)
    for intent in accepted:
        if intent not in status:
            verdict.lost.append(intent)
            continue
        state = str(status[intent])
        verdict.statuses[state] += 1
        if intent in in_queue:
            verdict.exceptions[in_queue[intent]] += 1
        elif status[intent] not in TERMINAL_STATUSES:
            verdict.not_at_rest[intent] = state
        paid = succeeded[hash_of.get(intent, "")] > 0
        if paid and state != "settled":
            verdict.paid_not_settled.append(intent)
        if state == "settled" and not paid:
            verdict.settled_not_paid.append(intent)
    return verdict


async def wait_for_rest(auditor_url: str, control: Path, accepted: list[str]) -> Verdict:
    """The verdict once every accepted intent is at rest, or when the deadline passes or
    nothing has moved for ``STALL_S`` (whichever is first): the caller asserts on it."""
    deadline = time.monotonic() + REST_DEADLINE_S
    last_change = time.monotonic()
    seen: Any = None
    while True:
        try:
            verdict = await check(auditor_url, control, accepted)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            verdict = None  # the database is coming back: ask again
        if verdict is not None:
            if verdict.at_rest:
                return verdict
            progress = (verdict.summary(), verdict.network_failed)
            if progress != seen:
                seen, last_change = progress, time.monotonic()
            now = time.monotonic()
            if now > deadline or now - last_change > STALL_S:
                return verdict
        elif time.monotonic() > deadline:
            raise AssertionError("the event log could not be read before the deadline")
        await asyncio.sleep(POLL_S)  # a poll interval, not synchronisation
