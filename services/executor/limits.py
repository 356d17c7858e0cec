"""Every bound of an executor, each a named constant with its reason (TigerBeetle style).

``ExecutorLimits`` bundles them so that tests can shrink the clocks (ack wait, heartbeats)
without touching the code paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Payments one worker drives at once. A payment holds an HTLC slot on the node (lnd allows
# 483 per channel) and a JetStream ack slot; 64 keeps one worker far below both.
PAYMENTS_IN_FLIGHT_MAX: Final = 64
# Unacked work orders for a whole (region, node) consumer, across all its workers.
CONSUMER_ACK_PENDING_MAX: Final = 1024
# JetStream redelivers a work order nobody has touched for this long (a dead worker's work).
ACK_WAIT_S: Final = 30.0
# A worker that is still paying says so well within ack_wait (three heartbeats per window).
HEARTBEAT_S: Final = 10.0
# How long one pull request waits for work before the loop looks around again.
FETCH_WAIT_S: Final = 1.0
# Messages asked for in one pull; never more than the free payment slots.
FETCH_BATCH_MAX: Final = 16
# A work order is a RecordedEvent of a few KiB; anything far larger is not ours.
WORK_ORDER_BYTES_MAX: Final = 64 * 1024

# Outcome commands: request/reply to the engine, retried on timeouts and `unavailable`.
ENGINE_REQUEST_TIMEOUT_S: Final = 10.0
ENGINE_ATTEMPTS_MAX: Final = 6
ENGINE_BACKOFF_S_FIRST: Final = 0.2
ENGINE_BACKOFF_S_MAX: Final = 5.0

# Node lookups (lookup_payment) before a decision; a node that does not answer after these is
# treated as unreachable for this delivery, and the work order comes back later.
NODE_LOOKUP_ATTEMPTS_MAX: Final = 3
NODE_BACKOFF_S_FIRST: Final = 0.2
# Extra time a pay() call gets beyond the work order's pay timeout before we stop waiting.
PAY_GRACE_S: Final = 5.0
# Following an in-flight payment: one delivery tracks it this long, then hands it back to
# JetStream (nak with delay) so that a long-held HTLC never pins a worker forever.
TRACK_S_MAX: Final = 600.0
# Polling interval when the node's update stream is broken.
TRACK_POLL_S: Final = 2.0
# Redelivery delays when the node or the engine cannot be asked (doubled per delivery).
REDELIVERY_DELAY_S_FIRST: Final = 1.0
REDELIVERY_DELAY_S_MAX: Final = 60.0
# A node that keeps refusing to send (with no record of the hash) is given up on after this
# many deliveries: the failure is then reported, with the node's empty record as proof.
SEND_DELIVERIES_MAX: Final = 5

# Health reports: interval, and how many missed intervals make a report stale.
HEALTH_INTERVAL_S: Final = 5.0
HEALTH_STALE_INTERVALS: Final = 3
HEALTH_CALL_TIMEOUT_S: Final = 5.0

# A refused work order (unsigned, forged, for an unknown intent) is recorded in the dead-letter
# stream before it is terminated. A record that cannot be written is tried again on this many
# deliveries; then the order is terminated anyway (logged), so it never loops forever.
REFUSAL_REPORT_DELIVERIES_MAX: Final = 5
# One dead-letter publish waits this long for JetStream's ack.
REFUSAL_REPORT_TIMEOUT_S: Final = 5.0

# An order whose outcome or status the engine refuses for a reason the executor does not
# understand is held, never terminated: its payment may have left (ADR 0072). It comes back
# after a delay doubled per delivery up to the cap, less up to a quarter at random, so that many
# orders refused at once (an engine fault) do not all return together.
HELD_DELAY_S_FIRST: Final = 2.0
HELD_DELAY_S_MAX: Final = 120.0
HELD_JITTER_FRACTION: Final = 0.25

# Graceful stop: how long running payments get to reach a decision before being abandoned
# (abandoned work orders are redelivered; nothing is lost).
STOP_GRACE_S: Final = 10.0


@dataclass(frozen=True, kw_only=True)
class ExecutorLimits:
    payments_in_flight_max: int = PAYMENTS_IN_FLIGHT_MAX
    consumer_ack_pending_max: int = CONSUMER_ACK_PENDING_MAX
    ack_wait_s: float = ACK_WAIT_S
    heartbeat_s: float = HEARTBEAT_S
    fetch_wait_s: float = FETCH_WAIT_S
    fetch_batch_max: int = FETCH_BATCH_MAX
    work_order_bytes_max: int = WORK_ORDER_BYTES_MAX
    engine_request_timeout_s: float = ENGINE_REQUEST_TIMEOUT_S
    engine_attempts_max: int = ENGINE_ATTEMPTS_MAX
    engine_backoff_s_first: float = ENGINE_BACKOFF_S_FIRST
    engine_backoff_s_max: float = ENGINE_BACKOFF_S_MAX
    node_lookup_attempts_max: int = NODE_LOOKUP_ATTEMPTS_MAX
    node_backoff_s_first: float = NODE_BACKOFF_S_FIRST
    pay_grace_s: float = PAY_GRACE_S
    track_s_max: float = TRACK_S_MAX
    track_poll_s: float = TRACK_POLL_S
    redelivery_delay_s_first: float = REDELIVERY_DELAY_S_FIRST
    redelivery_delay_s_max: float = REDELIVERY_DELAY_S_MAX
    send_deliveries_max: int = SEND_DELIVERIES_MAX
    health_interval_s: float = HEALTH_INTERVAL_S
    health_call_timeout_s: float = HEALTH_CALL_TIMEOUT_S
    stop_grace_s: float = STOP_GRACE_S
    refusal_report_deliveries_max: int = REFUSAL_REPORT_DELIVERIES_MAX
    refusal_report_timeout_s: float = REFUSAL_REPORT_TIMEOUT_S
    held_delay_s_first: float = HELD_DELAY_S_FIRST
    held_delay_s_max: float = HELD_DELAY_S_MAX
    held_jitter_fraction: float = HELD_JITTER_FRACTION

    def __post_init__(self) -> None:
        assert self.payments_in_flight_max >= 1
        assert self.fetch_batch_max >= 1
        assert self.ack_wait_s > 0 and self.heartbeat_s > 0
        # A heartbeat slower than ack_wait would let JetStream hand live work to another worker.
        assert self.heartbeat_s < self.ack_wait_s, "heartbeat_s must be below ack_wait_s"
        assert self.refusal_report_deliveries_max >= 1 and self.refusal_report_timeout_s > 0
        assert self.engine_attempts_max >= 1 and self.node_lookup_attempts_max >= 1
        assert self.send_deliveries_max >= 1
        assert 0 < self.redelivery_delay_s_first <= self.redelivery_delay_s_max
        assert 0 < self.held_delay_s_first <= self.held_delay_s_max
        assert 0 <= self.held_jitter_fraction < 1

    def redelivery_delay_s(self, delivery: int) -> float:
        """Backoff for the ``delivery``-th delivery (from 1) of a work order."""
        exponent = min(max(delivery - 1, 0), 16)
        delay_s: float = self.redelivery_delay_s_first * 2**exponent
        return min(delay_s, self.redelivery_delay_s_max)

    def held_delay_s(self, delivery: int, jitter: float) -> float:
        """Backoff for a held order's ``delivery``-th delivery; ``jitter`` is in [0, 1)."""
        exponent = min(max(delivery - 1, 0), 16)
        delay_s: float = min(self.held_delay_s_first * 2**exponent, self.held_delay_s_max)
        return delay_s * (1 - self.held_jitter_fraction * jitter)
