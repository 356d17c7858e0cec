"""The dead-letter desk over real NATS and PostgreSQL (ADR 0080; issue 13, finding 7).

Dead letters are listed, replayed onto the stream they came from, or dropped; every replay
and drop is in the log first, naming the operator from the subject and the reason.
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client

from services.bootstrap import Engine
from services.bus import subjects
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_api import request

DLQ = subjects.DLQ_API_PREFIX


async def _dead_lettered(engine: Engine, count: int) -> None:
    await wait_for(lambda: engine.commands.dead_lettered >= count, what=f"{count} dead letters")


async def _audit(engine: Engine) -> list[Any]:
    return await engine.store.read_stream("dead-letters")


async def test_list_replay_and_drop_are_audited_with_the_operator_and_reason(
    engine: Engine, nc: Client
) -> None:
    js = nc.jetstream()
    signed = {"Corridor-Agent-Key": "k-1"}  # a command's own headers survive dead-lettering
    await js.publish("corridor.cmd.v1.intents.submit.alice", b"{garbage", headers=signed)
    await _dead_lettered(engine, 1)
    # An honest command dead-lettered by a failure that is fixed now (issue 13, finding 1).
    await js.publish(
        "corridor.dlq.v1.cmd.intents.submit.alice",
        json.dumps(submit(key="honest")).encode(),
        headers={
            subjects.HDR_ERROR_CODE: "internal_error",
            subjects.HDR_ERROR_MESSAGE: "failed repeatedly",
            subjects.HDR_ORIGINAL_SUBJECT: "corridor.cmd.v1.intents.submit.alice",
        },
    )

    listed = await request(nc, f"{DLQ}.list.op-1", {"type": "ListDeadLetters", "version": 1})
    assert listed["ok"] and listed["messages"] == 2, listed
    garbage, honest = listed["entries"]
    assert garbage["error_code"] == "malformed_json"
    assert garbage["original_subject"] == "corridor.cmd.v1.intents.submit.alice"
    assert honest["error_code"] == "internal_error"
    stored = await js.get_msg(subjects.DLQ_STREAM, garbage["sequence"])
    assert (stored.headers or {}).get("Corridor-Agent-Key") == "k-1"

    # A reason is required, and bounded; nothing is done without one.
    for bad in ({}, {"reason": ""}, {"reason": "x" * 501}):
        body = {"type": "DropDeadLetters", "version": 1, "sequences": [garbage["sequence"]]}
        refused = await request(nc, f"{DLQ}.drop.op-1", {**body, **bad})
        assert refused["ok"] is False and refused["error"]["field"] == "reason", refused
    assert await _audit(engine) == []

    replayed = await request(
        nc,
        f"{DLQ}.replay.op-1",
        {"type": "ReplayDeadLetters", "version": 1, "sequences": [honest["sequence"]],
         "reason": "batch failure fixed in 0.9.1"},
    )  # fmt: skip
    assert replayed["ok"], replayed
    assert replayed["results"] == [
        {"sequence": honest["sequence"], "outcome": "replayed", "detail": ""}
    ]
    assert replayed["operator_id"] == "op-1"

    async def intent_created() -> bool:
        async with engine.store.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 1)

    await wait_for(intent_created, what="the replayed command to be applied")

    dropped = await request(
        nc,
        f"{DLQ}.drop.op-2",
        {"type": "DropDeadLetters", "version": 1,
         "sequences": [garbage["sequence"], 999_999], "reason": "junk from a broken client"},
    )  # fmt: skip
    assert [r["outcome"] for r in dropped["results"]] == ["dropped", "not_found"]
    info = await js.stream_info(subjects.DLQ_STREAM)
    assert info.state.messages == 0

    audit = await _audit(engine)
    assert [(e.type, e.payload["operator_id"], e.payload["reason"]) for e in audit] == [
        ("DeadLetterReplayed", "op-1", "batch failure fixed in 0.9.1"),
        ("DeadLetterDropped", "op-2", "junk from a broken client"),
    ]
    assert [e.metadata["actor"] for e in audit] == ["operator:op-1", "operator:op-2"]
    assert audit[0].payload["replayed_to"] == "corridor.cmd.v1.intents.submit.alice"
    assert audit[1].payload["error_code"] == "malformed_json"


async def test_only_the_named_verbs_and_requests_are_answered(engine: Engine, nc: Client) -> None:
    wrong = await request(nc, f"{DLQ}.drop.op-1", {"type": "ListDeadLetters", "version": 1})
    assert wrong["ok"] is False and wrong["error"]["field"] == "type"
    too_many = await request(
        nc,
        f"{DLQ}.drop.op-1",
        {"type": "DropDeadLetters", "version": 1, "sequences": list(range(1, 102)),
         "reason": "r"},
    )  # fmt: skip
    assert too_many["ok"] is False and too_many["error"]["field"] == "sequences"
    assert await _audit(engine) == []
