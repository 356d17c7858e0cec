"""``corridor watch``: events as JSON lines, in log order, as far as the credential may see.

Live events come by core subscription, history (``--from-start``, ``--from-position``) through
the reader's own consumer (services/bus/event_reader.py, ADR 0067). An auditor or operator
sees every event; a caller or agent the events of its own intents. The output is strictly
increasing in log position: a message at or below the last printed position is a
re-publication after a relay outage (README: consumers dedupe by ``Corridor-Position``), or
the overlap between history and live, and is skipped.

``--from-position N`` resumes at log position N. A stream sequence is not a log position
(messages can age out, be deleted or be re-published), so a reader of the whole stream finds
the start sequence by asking the stream, and every message is checked against N anyway
(``start_sequence``). A caller, who may not probe the stream, reads its own events from the
first and skips those before N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Final, TextIO

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.bus import subjects
from services.bus.event_reader import OWN_EVENTS_ROLES, events_subject, read_history
from services.cli import exit_codes
from services.cli.credentials import resolve
from services.cli.engine import connect
from services.cli.errors import UsageError
from services.endpoints import find_stack

# Settlement outcomes: what `corridor watch` shows unless --all is given.
SETTLEMENT_EVENTS: Final = ("IntentSettled", "IntentFailed", "IntentCancelled", "IntentExpired",
                            "IntentRejected", "PaymentInDoubt", "OutcomeIgnored")  # fmt: skip
# Live messages received but not printed yet; a slow terminal makes the subscription wait
# (and nats-py hold them, up to its pending limits), not this queue grow.
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


def wanted_type(event_type: str, *, all_events: bool) -> bool:
    return all_events or event_type in SETTLEMENT_EVENTS


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
    """Print events as JSON lines, in log order: the history asked for, then live ones.

    What is printed is what the credential may read (ADR 0067): every event for an auditor or
    operator, the events of its own intents for a caller or agent."""
    stack = find_stack(state_dir)
    credential = resolve(state_dir, role="auditor")
    identity = credential.identity
    role, ident = (identity.role, identity.id) if identity else ("engine", "watch")
    printer = _Printer(
        out=out or sys.stdout, err=err or sys.stderr, from_position=from_position or 1,
        check_first=from_position is not None and all_events and role not in OWN_EVENTS_ROLES,
        all_events=all_events, count=count,
    )  # fmt: skip
    nc = await connect(stack.nats_url, name="corridor-watch", creds=credential.path)
    try:
        live: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_MAX)

        async def on_live(msg: Any) -> None:
            await live.put(msg)

        # Subscribed before the history is read: whatever the history misses arrives here,
        # and what both hold is printed once (positions only rise).
        await nc.subscribe(events_subject(role, ident), cb=on_live)
        await nc.flush()
        if from_start or from_position is not None:
            start_seq = None
            if from_position is not None and role not in OWN_EVENTS_ROLES:
                start_seq = await start_sequence(nc.jetstream(), from_position)

            async def on_stored(msg: Any) -> bool:
                return printer.offer(msg)

            await read_history(nc, role=role, ident=ident, start_seq=start_seq, on_msg=on_stored)
        while not printer.done:
            printer.offer(await live.get())
    finally:
        await nc.close()


class _Printer:
    """Prints each wanted event once, in rising log position, until ``count`` are printed."""

    def __init__(
        self, *, out: TextIO, err: TextIO, from_position: int, check_first: bool,
        all_events: bool, count: int | None,
    ) -> None:  # fmt: skip
        self._out, self._err = out, err
        self._from_position = from_position
        self._check_first = check_first
        self._all_events = all_events
        self._count = count
        self._last_position = from_position - 1
        self.printed = 0

    @property
    def done(self) -> bool:
        return self._count is not None and self.printed >= self._count

    def offer(self, msg: Any) -> bool:
        """Print ``msg`` if it is wanted and new; True once enough are printed."""
        position = message_position(msg.headers, msg.data)
        if position <= self._last_position:
            return self.done  # before the start, or a re-publication already printed
        self._last_position = position
        if not wanted_type(subjects.event_type_of(msg.subject), all_events=self._all_events):
            return self.done
        if self._check_first and self.printed == 0 and position != self._from_position:
            # Every event is wanted, so the first must be N itself; the stream has lost it.
            self._err.write(
                f"corridor: the event stream starts at position {position}, not "
                f"{self._from_position}; `corridor replay --from-position "
                f"{self._from_position}` reads the log itself\n"
            )
        self._out.write(msg.data.decode() + "\n")
        self._out.flush()
        self.printed += 1
        return self.done


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
