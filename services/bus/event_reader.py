"""Reading CORRIDOR_EVT as one principal, within what its credential allows (ADR 0067).

Live events arrive by core subscription: on the whole event tree for operators, auditors and
the engine, on the caller's own subtree (``corridor.evt.v2.intent.<id>.>``) for callers and
agents. History comes through the principal's own consumer, named ``<role>-<id>`` (the only
name its permissions grant), filtered on the same subjects, read once to the stream's end and
deleted. A caller's permissions pin that filter to its own subtree, so the same code reads
everything for an auditor and one caller's intents for that caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.bus import subjects

# Roles that read their own intents' events only (the rest read every event).
OWN_EVENTS_ROLES: Final = ("caller", "agent")
# Messages asked for per pull: enough to stream a history quickly, small enough that a slow
# terminal never holds more than this many undelivered.
HISTORY_BATCH_MAX: Final = 256
# A pull that returns nothing for this long while messages are pending means the server is
# in trouble; the reader says so rather than waiting forever.
HISTORY_FETCH_TIMEOUT_S: Final = 5.0
# A history consumer left behind by a reader that died is removed by the server after this.
HISTORY_CONSUMER_INACTIVE_S: Final = 30.0


def consumer_name(role: str, ident: str) -> str:
    """The one consumer on CORRIDOR_EVT that ``role``/``ident`` may create, read and delete."""
    return f"{role}-{ident}"


def events_subject(role: str, ident: str) -> str:
    """What ``role``/``ident`` may read: its own subtree, or every event."""
    if role in OWN_EVENTS_ROLES:
        return subjects.owner_events(ident)
    return subjects.EVT_WILDCARD


async def read_history(
    nc: Client, *, role: str, ident: str, start_seq: int | None,
    on_msg: Callable[[Any], Awaitable[bool]],
) -> None:  # fmt: skip
    """Give ``on_msg`` every stored event ``role``/``ident`` may read, from stream sequence
    ``start_seq`` (None: the first) to the end as it is now, in stream order; stop early when
    ``on_msg`` returns True. One history reader per credential at a time: a second one
    replaces the first's consumer."""
    js = nc.jetstream()
    name = consumer_name(role, ident)
    with contextlib.suppress(NotFoundError):
        # A leftover of an earlier reader would be updated, not replaced, and a start
        # position cannot be updated.
        await js.delete_consumer(subjects.EVT_STREAM, name)
    config = ConsumerConfig(
        name=name, filter_subject=events_subject(role, ident), ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL, inactive_threshold=HISTORY_CONSUMER_INACTIVE_S,
        mem_storage=True, num_replicas=1,
    )  # fmt: skip
    if start_seq is not None:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = start_seq
    info = await js.add_consumer(subjects.EVT_STREAM, config=config)
    try:
        if info.num_pending == 0:
            return
        sub = await js.pull_subscribe_bind(consumer=name, stream=subjects.EVT_STREAM)
        try:
            while True:
                for msg in await sub.fetch(HISTORY_BATCH_MAX, timeout=HISTORY_FETCH_TIMEOUT_S):
                    if await on_msg(msg) or msg.metadata.num_pending == 0:
                        return
        finally:
            await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):  # it expires by itself if this fails
            await js.delete_consumer(subjects.EVT_STREAM, name)
