"""kill -9 the engine (and with it the outbox relay, which runs inside the engine process:
``Engine.start`` spawns ``relay.run`` as a task), and kill -9 then restart nats-server, each a
third of the way into a steady load that goes on through the fault."""

from __future__ import annotations

from tests.faults.drill import drive
from tests.faults.harness import Harness


async def test_engine_and_relay_killed(harness: Harness) -> None:
    await harness.start()
    assert harness.engine is not None
    killed_pid = harness.engine.pid

    async def fault() -> None:
        await harness.kill_engine()
        await harness.start_engine()

    outcome = await drive(harness, "kill-engine-and-relay", fault=fault)
    assert harness.engine.pid != killed_pid
    outcome.verdict.assert_holds()


async def test_nats_server_restarted(harness: Harness) -> None:
    await harness.start()
    outcome = await drive(harness, "restart-nats-server", fault=harness.restart_nats)
    outcome.verdict.assert_holds()
