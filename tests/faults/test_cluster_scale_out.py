"""Scale-out under faults (issue 17, ADR 0196): a 3-node nats-server cluster with R3 streams,
PostgreSQL, three engine processes (one relay leads, two stand by), two executors per
simulated node, and a steady load through three faults in turn:

1. kill -9 the nats-server leading CORRIDOR_EVT, and restart it once the load has moved on;
2. kill -9 the engine whose relay holds the relay lease (a standby takes the lease);
3. kill -9 another engine, and start it again.

Then the log against the simulated network's own ledger: no double payment, no accepted
intent lost, every one at rest, and the caller's spend limit held.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Final

import asyncpg

from services.bus import subjects
from services.bus.jetstream import connect
from tests.faults.cluster import ENGINES, REPLICAS, SPEND_LIMIT_MSAT, STREAMS, ClusterHarness
from tests.faults.drill import drive, honest_bodies
from tests.faults.load import amount_msat

INTENTS: Final = 90
FAULT_AFTER: Final = 10
# Each of the load's 4 clients pauses this long between submits: about 2 intents/s for 45 s,
# so each fault meets intents still arriving.
PAUSE_S: Final = 2.0
# Between two faults the log must move on by this many events (an intent writes about 6).
PROGRESS_EVENTS: Final = 20
PROGRESS_TIMEOUT_S: Final = 60.0


async def head(harness: ClusterHarness) -> int:
    conn = await asyncpg.connect(harness.auditor_url)
    try:
        return int(await conn.fetchval("SELECT position FROM event_log_head"))
    finally:
        await conn.close()


async def progressed(harness: ClusterHarness, what: str) -> None:
    """Wait (deadline, no sleep-to-sync) until the log moved ``PROGRESS_EVENTS`` on."""
    start = await head(harness)
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while await head(harness) < start + PROGRESS_EVENTS:
        assert time.monotonic() < deadline, f"the log did not move on after {what}"
        await asyncio.sleep(0.1)  # a poll interval, not synchronisation


async def test_cluster_engines_relay_and_nats_node_killed(tmp_path: Path) -> None:
    harness = ClusterHarness(tmp_path / "cluster")
    notes: dict[str, object] = {}
    try:
        await harness.start()
        nc = await connect(
            harness.stack.nats_url, name="drill-check", creds=harness.stack.engine_creds
        )
        try:
            js = nc.jetstream()
            replicas = {s: (await js.stream_info(s)).config.num_replicas for s in STREAMS}
        finally:
            await nc.close()
        # CORRIDOR_DISPATCH was made with one copy before the engines started: moved to 3.
        assert replicas == dict.fromkeys(STREAMS, REPLICAS), replicas
        cluster = harness.stack.cluster

        async def faults() -> None:
            leader = cluster.stream_leader(subjects.EVT_STREAM)
            assert leader is not None, "CORRIDOR_EVT has no leader"
            cluster.kill(leader)
            notes["nats_node_killed"] = f"n{leader}"
            await progressed(harness, "a nats-server was killed")
            await asyncio.to_thread(cluster.restart, leader)
            await progressed(harness, "the nats-server rejoined")
            relay = await harness.relay_leader()
            assert relay is not None, "no engine holds the relay lease"
            await harness.kill_engine_process(relay)
            notes["relay_leader_killed"] = f"engine-{relay}"
            new_relay = await _new_relay_leader(harness, relay)
            await progressed(harness, "the relay leader was killed")
            notes["relay_leader_after"] = f"engine-{new_relay}"
            other = next(i for i in range(ENGINES) if i not in (relay, new_relay))
            await harness.kill_engine_process(other)
            notes["engine_killed"] = f"engine-{other}"
            await harness.start_engine_process(other)
            await progressed(harness, "an engine was killed and started again")

        # The limit bites: the load asks for more than it allows.
        assert sum(amount_msat(i) for i in range(INTENTS)) > SPEND_LIMIT_MSAT
        outcome = await drive(
            harness,
            "cluster-scale-out",
            fault=faults,
            fault_after=FAULT_AFTER,
            bodies=await _bodies(harness),
            notes=notes,
            pause_s=PAUSE_S,
        )
        outcome.verdict.assert_holds()
        assert len(outcome.accepted) == INTENTS, [s for s in outcome.submits if s.refused]
        # Limits held: what settled stays within the window's limit, and the engines refused
        # the rest (the run is far shorter than the hour the window spans).
        settled = await _settled_msat(harness, outcome.accepted)
        assert settled <= SPEND_LIMIT_MSAT, f"settled {settled} msat, limit {SPEND_LIMIT_MSAT}"
        refused = await _rejections(harness, outcome.accepted)
        assert refused and set(refused) == {"spend_limit_exceeded"}, refused
        assert len(refused) == outcome.verdict.statuses["rejected"]
    finally:
        if hasattr(harness, "stack"):
            await harness.stop()


async def _new_relay_leader(harness: ClusterHarness, killed: int) -> int:
    """A standby's relay takes the lease once PostgreSQL ends the killed one's session."""
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while (leader := await harness.relay_leader()) in (None, killed):
        assert time.monotonic() < deadline, "no standby relay took the lease"
        await asyncio.sleep(0.1)  # a poll interval, not synchronisation
    assert leader is not None
    return leader


async def _bodies(harness: ClusterHarness) -> list[dict[str, object]]:
    return await honest_bodies(harness, "cluster", INTENTS)


async def _settled_msat(harness: ClusterHarness, intents: list[str]) -> int:
    conn = await asyncpg.connect(harness.auditor_url)
    try:
        value = await conn.fetchval(
            "SELECT coalesce(sum((payload->>'total_msat')::bigint), 0) FROM events"
            " WHERE type = 'IntentSettled' AND stream_id = ANY($1::text[])",
            intents,
        )
    finally:
        await conn.close()
    return int(value)


async def _rejections(harness: ClusterHarness, intents: list[str]) -> list[str]:
    """The reason of each policy rejection among ``intents``."""
    conn = await asyncpg.connect(harness.auditor_url)
    try:
        rows = await conn.fetch(
            "SELECT payload->>'reason' AS reason FROM events"
            " WHERE type = 'IntentRejected' AND stream_id = ANY($1::text[])",
            intents,
        )
    finally:
        await conn.close()
    return [str(row["reason"]) for row in rows]
