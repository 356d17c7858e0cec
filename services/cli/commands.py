"""Client-side CLI commands: submit, get, approve/reject/cancel, watch, replay."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import msgspec

from schemas.codec import encode
from services.bus import subjects
from services.bus.jetstream import connect
from services.cli.endpoints import find_stack
from services.engine.event_codec import to_recorded
from services.eventstore.postgres import PostgresEventStore

# Settlement outcomes: what `corridor watch` shows unless --all is given.
SETTLEMENT_EVENTS = ("IntentSettled", "IntentFailed", "IntentCancelled", "IntentExpired",
                     "IntentRejected", "PaymentInDoubt", "OutcomeIgnored")  # fmt: skip
REQUEST_TIMEOUT_S = 15.0


async def request(state_dir: Path | None, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    stack = find_stack(state_dir)
    nc = await connect(stack.nats_url, name="corridor-cli")
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=REQUEST_TIMEOUT_S)
    finally:
        await nc.close()
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def submit_body(args: Any) -> dict[str, Any]:
    if args.json:
        text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text()
        body: dict[str, Any] = json.loads(text)
        return body
    body = {
        "type": "SubmitPaymentIntent",
        "version": 1,
        "idempotency_key": args.idempotency_key,
        "caller": {"id": args.caller_id, "kind": args.caller_kind},
        "corridor": args.corridor,
        "amount_msat": args.amount_msat,
        "max_fee_msat": args.max_fee_msat,
    }
    if args.payment_request:
        body["payment_request"] = args.payment_request
    if args.destination:
        body["destination"] = args.destination
    if args.deadline_s:
        body["deadline_s"] = args.deadline_s
    if args.metadata:
        body["metadata"] = dict(kv.split("=", 1) for kv in args.metadata)
    return body


async def watch(
    state_dir: Path | None, *, all_events: bool, from_start: bool, count: int | None,
    out: TextIO = sys.stdout,
) -> None:  # fmt: skip
    from nats.js.api import DeliverPolicy

    stack = find_stack(state_dir)
    nc = await connect(stack.nats_url, name="corridor-watch")
    js = nc.jetstream()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)

    async def on_msg(msg: Any) -> None:
        await queue.put(msg.data)

    wanted = [subjects.EVT_WILDCARD] if all_events else [
        f"{subjects.EVT_PREFIX}.intent.{name}" for name in SETTLEMENT_EVENTS
    ]  # fmt: skip
    subs = []
    try:
        for subject in wanted:
            subs.append(
                await js.subscribe(
                    subject,
                    stream=subjects.EVT_STREAM,
                    cb=on_msg,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.ALL if from_start else DeliverPolicy.NEW,
                )
            )
        printed = 0
        while count is None or printed < count:
            out.write((await queue.get()).decode() + "\n")
            out.flush()
            printed += 1
    finally:
        await nc.close()


async def replay(
    state_dir: Path | None, *, from_position: int, stream: str | None, out: TextIO,
    verify: bool,
) -> int:  # fmt: skip
    stack = find_stack(state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    try:
        if stream:
            for event in await store.read_stream(stream):
                if event.position >= from_position:
                    out.write(encode(to_recorded(event)).decode() + "\n")
        else:
            async for batch in store.pages(after_position=max(0, from_position - 1)):
                out.writelines(encode(to_recorded(e)).decode() + "\n" for e in batch)
        if verify:
            report = await store.verify_chain()
            sys.stderr.write(msgspec.json.encode(report).decode() + "\n")
            return 0 if report.ok else 3
        return 0
    finally:
        await store.close()


async def exceptions(state_dir: Path | None, *, stuck_after_s: int) -> list[dict[str, Any]]:
    import time

    from projections.exceptions import build

    stack = find_stack(state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    try:
        events: list[dict[str, Any]] = []
        async for batch in store.pages():
            events.extend(
                {"type": e.type, "stream_id": e.stream_id, "recorded_at_ms": e.recorded_at_ms,
                 "data": e.payload}
                for e in batch
            )  # fmt: skip
    finally:
        await store.close()
    return build(events, now_ms=time.time_ns() // 1_000_000, stuck_after_ms=stuck_after_s * 1000)
