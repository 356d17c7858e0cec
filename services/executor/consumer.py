"""The durable JetStream pull consumer that holds a (region, node)'s unfinished work orders.

Unacked work orders *are* the executor's record of unresolved work: a worker that dies, at
any instant, leaves its orders unacked and JetStream hands them to the next worker after
``ack_wait``. See docs/adr/0201-region-executor-work-orders.md.
"""

from __future__ import annotations

import datetime

import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.bus import subjects
from services.bus.port import DELIVER_FOREVER, Bus, Durable, PullConsumer
from services.bus.stream_specs import stream_spec
from services.executor.limits import ExecutorLimits

log = structlog.get_logger("corridor.executor")


async def ensure_dispatch_stream(bus: Bus, *, duplicate_window_s: int) -> None:
    """Create the dispatch stream if the engine has not yet, with the default limits (ADR
    0079; the engine keeps them from then on); never change the engine's streams."""
    await bus.add_stream(stream_spec(subjects.DISPATCH_STREAM, duplicate_window_s))


def consumer_name(region: str, node: str) -> str:
    # One durable per (region, node): a region may hold several nodes (us-lnd, us-cln), and
    # each node's orders have their own subject, so a node's workers see only their own.
    return f"executor-{region}-{node}"


def consumer_config(region: str, node: str, limits: ExecutorLimits) -> ConsumerConfig:
    name = consumer_name(region, node)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subject=subjects.dispatch_subject(region, node),
        # Orders dispatched before the first worker started must not be lost.
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=limits.ack_wait_s,
        # Never give up on a work order: money may be on the wire (unknown is a state).
        max_deliver=-1,
        max_ack_pending=limits.consumer_ack_pending_max,
    )


async def durable_created_at(js: JetStreamContext, region: str, node: str) -> datetime.datetime:
    """When the node's durable was created, on the server's clock (as message timestamps are):
    an order stored before that may have been consumed by an earlier durable."""
    info = await js.consumer_info(subjects.DISPATCH_STREAM, consumer_name(region, node))
    created: datetime.datetime = info.created
    return created


def consumer_durable(region: str, node: str, limits: ExecutorLimits) -> Durable:
    """``consumer_config`` as the bus port names it."""
    return Durable(
        stream=subjects.DISPATCH_STREAM,
        name=consumer_name(region, node),
        filter_subject=subjects.dispatch_subject(region, node),
        ack_wait_s=limits.ack_wait_s,
        # Never give up on a work order: money may be on the wire (unknown is a state).
        max_deliver=DELIVER_FOREVER,
        max_ack_pending=limits.consumer_ack_pending_max,
    )


async def bind_consumer(bus: Bus, region: str, node: str, limits: ExecutorLimits) -> PullConsumer:
    # Over NATS the durable is created on $JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>,
    # the one create subject an executor's credential may use: the server checks the body's
    # filter against the subject's, so a node's credential cannot widen its durable (ADR
    # 0060). An existing durable the server will not change in place is kept.
    return await bus.consumer(consumer_durable(region, node, limits))


async def durable_lost(bus: Bus, region: str, node: str) -> bool:
    """Whether the node's durable is gone (its stream was deleted, and perhaps re-created
    empty by the engine, ADR 0075). Other failures raise: they say nothing about it."""
    return not await bus.has_durable(subjects.DISPATCH_STREAM, consumer_name(region, node))
