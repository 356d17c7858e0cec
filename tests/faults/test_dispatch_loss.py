"""``CORRIDOR_DISPATCH`` deleted under steady load, then the engine restarted as
runbooks/jetstream-lost-events.md says. The executors keep running: nobody told them."""

from __future__ import annotations

from services.bus import subjects
from services.bus.jetstream import connect
from tests.faults.drill import drive
from tests.faults.harness import Harness


async def test_dispatch_stream_deleted(harness: Harness) -> None:
    await harness.start()
    notes: dict[str, object] = {}

    async def fault() -> None:
        nc = await connect(
            harness.stack.nats_url, name="drill-operator", creds=harness.stack.engine_creds
        )
        try:
            js = nc.jetstream()
            notes["orders_deleted"] = (
                await js.stream_info(subjects.DISPATCH_STREAM)
            ).state.messages
            await js.delete_stream(subjects.DISPATCH_STREAM)
        finally:
            await nc.close()
        await harness.stop_engine()
        await harness.start_engine()

    outcome = await drive(harness, "delete-dispatch-stream", fault=fault, notes=notes)
    outcome.verdict.assert_holds()
