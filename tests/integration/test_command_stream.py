"""Fire-and-forget commands through JetStream CORRIDOR_CMD, with a dead-letter queue."""

from __future__ import annotations

import json

from nats.aio.client import Client
from nats.js.api import ConsumerConfig

from services.bootstrap import Engine
from tests.conftest import wait_for
from tests.factories import submit


async def _stream_ids(engine: Engine) -> set[str]:
    async with engine.store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT DISTINCT stream_id FROM events")
    return {r["stream_id"] for r in rows}


async def test_commands_are_captured_and_applied(engine: Engine, nc: Client) -> None:
    js = nc.jetstream()
    for i in range(20):
        await js.publish(
            "corridor.cmd.v1.intents.submit.alice", json.dumps(submit(key=f"f{i}")).encode()
        )

    async def all_applied() -> bool:
        return len(await _stream_ids(engine)) == 20

    await wait_for(all_applied, what="20 intents from the command stream")
    info = await js.consumer_info("CORRIDOR_CMD", "corridor-intake")
    await wait_for(lambda: engine.commands.dead_lettered == 0, what="no dead letters")
    assert info.num_redelivered == 0


async def test_poison_message_is_dead_lettered_and_does_not_block(
    engine: Engine, nc: Client
) -> None:
    js = nc.jetstream()
    dlq = await js.pull_subscribe(
        "corridor.dlq.v1.>", durable="test-dlq", stream="CORRIDOR_DLQ", config=ConsumerConfig()
    )
    await js.publish("corridor.cmd.v1.intents.submit.alice", b"{garbage")
    await js.publish(
        "corridor.cmd.v1.intents.submit.alice",
        json.dumps({**submit(key="v9"), "version": 9}).encode(),
    )
    await js.publish("corridor.cmd.v1.intents.submit.alice", json.dumps(submit(key="ok")).encode())

    async def good_one_applied() -> bool:
        return len(await _stream_ids(engine)) == 1

    await wait_for(good_one_applied, what="the valid command behind two poison ones")
    msgs = await dlq.fetch(batch=2, timeout=5)
    codes = sorted(m.headers["Corridor-Error-Code"] for m in msgs)
    assert codes == ["malformed_json", "unknown_version"]
    assert {m.headers["Corridor-Original-Subject"] for m in msgs} == {
        "corridor.cmd.v1.intents.submit.alice"
    }
    assert any(m.headers.get("Corridor-Error-Field") == "version" for m in msgs)

    async def all_acked() -> bool:
        info = await js.consumer_info("CORRIDOR_CMD", "corridor-intake")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await wait_for(all_acked, what="the command consumer to ack everything")
