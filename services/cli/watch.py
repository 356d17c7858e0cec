"""``corridor watch``: events from JetStream as JSON lines, in log order.

One ordered consumer with several filter subjects (never one consumer per event type, whose
interleaving would follow delivery, not the log). The output is strictly increasing in log
position: a message at or below the last printed position is a re-publication after a relay
outage (README: consumers dedupe by ``Corridor-Position``) and is skipped.

``--from-position N`` resumes at log position N. A stream sequence is not a log position
(messages can age out, be deleted or be re-published), so the start sequence is found by
asking the stream, and every message is checked against N anyway (``start_sequence``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Final, TextIO

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.bus import subjects
from services.cli import exit_codes
from services.cli.credentials import resolve
from services.cli.engine import connect
from services.cli.errors import UsageError
from services.endpoints import find_stack

# Settlement outcomes: what `corridor watch` shows unless --all is given.
SETTLEMENT_EVENTS: Final = ("IntentSettled", "IntentFailed", "IntentCancelled", "IntentExpired",
                            "IntentRejected", "PaymentInDoubt", "OutcomeIgnored")  # fmt: skip
# Messages received but not printed yet; a slow terminal makes the consumer wait, not memory grow.
QUEUE_MAX: Final = 10_000
# Sequence probes to find where a position starts: a binary search over 2**64 needs 64.
PROBES_MAX: Final = 64


async def run(args: argparse.Namespace) -> int:
    if args.from_position is not None and args.from_position < 1:
        raise UsageError("--from-position counts from 1")
    if args.from_position is not None and args.from_start:
        raise UsageError("--from-start and --from-position exclude each other")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    await watch(
        args.state_dir, all_events=args.all, from_start=args.from_start,
        from_position=args.from_position, count=args.count,
    )  # fmt: skip
    return exit_codes.OK


def filter_subjects(*, all_events: bool) -> list[str]:
    if all_events:
        return [subjects.EVT_WILDCARD]
    return [f"{subjects.EVT_PREFIX}.intent.{name}" for name in SETTLEMENT_EVENTS]


async def watch(
    state_dir: Any,
    *,
    all_events: bool,
    from_start: bool = False,
    from_position: int | None = None,
    count: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    err = err or sys.stderr
    stack = find_stack(state_dir)
    credential = resolve(state_dir, role="auditor")
    nc = await connect(stack.nats_url, name="corridor-watch", creds=credential.path)
    try:
        js = nc.jetstream()
        wanted = filter_subjects(all_events=all_events)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        if from_start:
            config.deliver_policy = DeliverPolicy.ALL
        elif from_position is not None:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = await start_sequence(js, from_position)
        if len(wanted) == 1:
            config.filter_subject = wanted[0]
        else:
            config.filter_subjects = wanted
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_MAX)

        async def on_msg(msg: Any) -> None:
            await queue.put(msg)

        await js.subscribe(
            wanted[0], stream=subjects.EVT_STREAM, cb=on_msg, ordered_consumer=True,
            config=config,
        )  # fmt: skip
        await _print_in_order(queue, out=out, err=err, from_position=from_position or 1,
                              resuming=from_position is not None, all_events=all_events,
                              count=count)  # fmt: skip
    finally:
        await nc.close()


async def _print_in_order(
    queue: asyncio.Queue[Any], *, out: TextIO, err: TextIO, from_position: int,
    resuming: bool, all_events: bool, count: int | None,
) -> None:  # fmt: skip
    printed = 0
    last_position = from_position - 1
    while count is None or printed < count:
        msg = await queue.get()
        position = message_position(msg.headers, msg.data)
        if position <= last_position:
            continue  # before the start, or a re-publication already printed
        if resuming and all_events and printed == 0 and position != from_position:
            # Every event is wanted, so the first must be N itself; the stream has lost it.
            err.write(
                f"corridor: the event stream starts at position {position}, not "
                f"{from_position}; `corridor replay --from-position {from_position}` reads "
                "the log itself\n"
            )
        out.write(msg.data.decode() + "\n")
        out.flush()
        last_position = position
        printed += 1


def message_position(headers: dict[str, str] | None, body: bytes) -> int:
    """The log position of an event message: the ``Corridor-Position`` header, else the body's
    ``position``. A message without either is not an event of ours."""
    value = (headers or {}).get(subjects.HDR_POSITION)
    if value is None:
        try:
            value = json.loads(body).get("position")
        except (ValueError, AttributeError):
            value = None
    if value is None:
        raise UsageError(f"a message in {subjects.EVT_STREAM} carries no log position")
    return int(value)


async def start_sequence(js: JetStreamContext, position: int) -> int:
    """A stream sequence at or before the first message holding ``position`` or later.

    The relay publishes in log order, so positions rise with the sequence except where an
    outage made it publish a tail again; the tail it re-publishes runs on to the end, so any
    sequence found here is followed by every position from ``position`` on. Starting early is
    always safe (the caller skips positions below ``position``); a sequence whose message is
    gone (deleted) counts as "at or after", which can only move the start earlier.
    """
    info = await js.stream_info(subjects.EVT_STREAM)
    first, last = info.state.first_seq, info.state.last_seq
    if info.state.messages == 0 or last < first:
        return max(1, last + 1)
    # The hint: with no lost or repeated messages, sequence and position are the same.
    if (
        first <= position <= last
        and await _position_at(js, position) == position
        and (position == first or (await _position_at(js, position - 1) or 0) < position)
    ):
        return position
    low, high = first, last + 1  # the answer is in [low, high]
    for _ in range(PROBES_MAX):
        if low >= high:
            break
        middle = (low + high) // 2
        found = await _position_at(js, middle)
        if found is None or found >= position:
            high = middle
        else:
            low = middle + 1
    return low


async def _position_at(js: JetStreamContext, seq: int) -> int | None:
    try:
        msg = await js.get_msg(subjects.EVT_STREAM, seq=seq)
    except NotFoundError:
        return None
    return message_position(msg.headers, msg.data or b"")
