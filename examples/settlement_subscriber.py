"""Follow your intents' settlement events from Corridor's JetStream stream, durably.

Needs only nats-py and nkeys. A caller's credential may read its own intents' events only
(`corridor.evt.v2.intent.<caller id>.>`) through the one durable consumer named after it,
`<role>-<id>` (e.g. `caller-acme`). This program:

- creates (or resumes) that durable consumer: deliver policy "all" the first time, then it
  resumes where its acknowledgements left off, across restarts of either side;
- acknowledges each message after handling it (explicit acks; an unacknowledged message is
  redelivered after ack_wait);
- dedupes by the `Corridor-Position` header, remembered in `--state FILE`: the relay may publish
  an event again after an outage, and redelivery may repeat one; positions only grow;
- prints one JSON line per settlement event (IntentSettled, IntentFailed, IntentCancelled,
  IntentExpired, IntentRejected) and stops after `--count N` of them (or runs until Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import nats
import nkeys
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

STREAM = "CORRIDOR_EVT"
SETTLEMENT = {"IntentSettled", "IntentFailed", "IntentCancelled", "IntentExpired", "IntentRejected"}
POSITION = "Corridor-Position"


async def follow(args: argparse.Namespace) -> int:
    seed = Path(args.creds).read_bytes().strip()
    public_key = nkeys.from_seed(seed).public_key.decode()
    nc = await nats.connect(
        args.nats_url, nkeys_seed=args.creds, inbox_prefix=f"_INBOX.{public_key}"
    )
    js = nc.jetstream()
    name = f"{args.role}-{args.caller_id}"
    state = Path(args.state)
    last_position = int(state.read_text()) if state.exists() else 0
    try:
        try:
            await js.consumer_info(STREAM, name)  # resume: its acks say where it was
        except NotFoundError:
            await js.add_consumer(
                STREAM,
                ConsumerConfig(
                    name=name,
                    durable_name=name,
                    filter_subject=f"corridor.evt.v2.intent.{args.caller_id}.>",
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=30,
                ),
            )
        sub = await js.pull_subscribe_bind(durable=name, stream=STREAM)
        printed = 0
        while args.count is None or printed < args.count:
            try:
                batch = await sub.fetch(20, timeout=args.idle_s)
            except TimeoutError:
                continue
            for msg in batch:
                position = int((msg.headers or {}).get(POSITION, "0"))
                if position > last_position:
                    event = json.loads(msg.data)
                    if event["type"] in SETTLEMENT:
                        print(
                            json.dumps(
                                {
                                    "position": position,
                                    "type": event["type"],
                                    "intent_id": event["stream_id"],
                                    "data": event["data"],
                                }
                            ),
                            flush=True,
                        )
                        printed += 1
                    last_position = position
                    state.write_text(str(last_position))  # before the ack: at least once
                await msg.ack()
        return 0
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--creds", required=True, help="the caller's nkey seed file")
    parser.add_argument("--caller-id", required=True)
    parser.add_argument("--role", default="caller", choices=["caller", "agent"])
    parser.add_argument("--state", required=True, help="where the last position is kept")
    parser.add_argument("--count", type=int, help="stop after N settlement events")
    parser.add_argument("--idle-s", type=float, default=2.0, help="fetch wait per round")
    return asyncio.run(follow(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
