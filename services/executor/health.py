"""Node health reports: what executors publish, and a pure board that reads them.

Each worker publishes a ``HealthReport`` on core NATS ``corridor.health.v1.<region>.<node>``
every ``health_interval_s``. ``HealthBoard`` keeps the newest report per configured node and
turns them into the router's ``NodeHealth``; a report older than ``stale_intervals`` intervals
counts as unhealthy, so a dead executor (or a dead node) drains traffic away by itself.

The board trusts only what it can check (ADR 0062): the subject names the node (publish
permissions bind it to that node's executor), the payload must agree with it, the node must be
one the engine routes to, and time comes from the engine's clock. A sender's timestamp may make
a report older, never newer than the moment the engine received it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec
import structlog

from services.bus import subjects
from services.domain.routing import NodeHealth, NodeKey

log = structlog.get_logger("corridor.health")

HEALTH_PREFIX: Final = subjects.HEALTH_PREFIX
HEALTH_WILDCARD: Final = subjects.HEALTH_WILDCARD
_PREFIX_TOKENS: Final = tuple(HEALTH_PREFIX.split("."))
# A report is a few hundred bytes; refuse anything that cannot be one.
HEALTH_REPORT_BYTES_MAX: Final = 4096
# How far ahead of the engine's clock a report may be dated. Hosts kept by NTP agree within
# tens of milliseconds; 5 s still takes a badly kept clock. A report dated further ahead is
# broken or forged (a report from the year 3000 once outranked every genuine one), and is
# dropped. Within the limit it changes nothing either: it counts as received now.
HEALTH_CLOCK_SKEW_MS_MAX: Final = 5_000
# Configured nodes, at most: the board holds one report per node, so this bounds it. Far above
# any corridor table (a few nodes per region); more is a configuration mistake.
HEALTH_NODES_MAX: Final = 1_024
# Messages the engine's health subscription may queue before nats-py drops the surplus (and
# says so: a slow-consumer error). The handler does not wait on anything, so the queue only
# fills under a flood; a lost report costs nothing, as the next one follows an interval later.
HEALTH_PENDING_MSGS_MAX: Final = 1_024
HEALTH_PENDING_BYTES_MAX: Final = HEALTH_PENDING_MSGS_MAX * HEALTH_REPORT_BYTES_MAX
# A dropped report is logged at most once per reason per interval, with the number dropped
# since, so a flood of forged reports cannot flood the log too.
HEALTH_DROP_LOG_INTERVAL_MS: Final = 10_000
# Subjects are the sender's text: logged no longer than this.
HEALTH_SUBJECT_LOG_CHARS_MAX: Final = 128


def health_subject(region: str, node: str) -> str:
    return f"{HEALTH_PREFIX}.{region}.{node}"


def subject_node(subject: str) -> NodeKey | None:
    """``(region, node)`` from ``corridor.health.v1.<region>.<node>``; None for any other shape."""
    tokens = subject.split(".")
    if len(tokens) != len(_PREFIX_TOKENS) + 2 or tuple(tokens[:-2]) != _PREFIX_TOKENS:
        return None
    region, node = tokens[-2:]
    if not region or not node:
        return None
    return region, node


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    region: str
    healthy: bool
    outbound_msat: int  # sum of local balances on active channels
    inbound_msat: int
    channels: int  # active channels
    observed_at_ms: int
    executor_id: str

    def __post_init__(self) -> None:
        if self.outbound_msat < 0 or self.inbound_msat < 0 or self.channels < 0:
            raise ValueError("health amounts and counts are never negative")


_decoder = msgspec.json.Decoder(HealthReport)


def decode_report(raw: bytes) -> HealthReport:
    """Raises ``msgspec.DecodeError`` (or ``ValueError``) for anything but a report."""
    if len(raw) > HEALTH_REPORT_BYTES_MAX:
        raise ValueError(f"health report is {len(raw)} bytes, limit is {HEALTH_REPORT_BYTES_MAX}")
    return _decoder.decode(raw)


class Verdict(enum.StrEnum):
    """What the board did with one message: a closed set, each counted."""

    ACCEPTED = "accepted"
    # Not newer than the report held: several workers report on one node, and an older
    # report arriving late changes nothing. Expected, so not logged.
    SUPERSEDED = "superseded"
    UNKNOWN_NODE = "unknown_node"  # the subject names a node outside the corridor table
    MALFORMED = "malformed"  # not a health subject, too large, or not a report
    SUBJECT_MISMATCH = "subject_mismatch"  # the payload names another node than the subject
    FROM_THE_FUTURE = "from_the_future"  # dated more than HEALTH_CLOCK_SKEW_MS_MAX ahead


DROPPED: Final = frozenset(Verdict) - {Verdict.ACCEPTED, Verdict.SUPERSEDED}


@dataclass(frozen=True, slots=True)
class _Held:
    report: HealthReport
    # When the engine takes the node's state to have been observed, on the engine's clock:
    # the sender's time, but never later than the engine received the report.
    observed_at_ms: int


class HealthBoard:
    """Newest report per configured (region, node); pure: reports and the clock come from
    outside, and the board never holds a node the corridor table does not name."""

    def __init__(
        self,
        *,
        nodes: Iterable[NodeKey],
        interval_ms: int,
        stale_intervals: int = 3,
        clock_skew_ms_max: int = HEALTH_CLOCK_SKEW_MS_MAX,
    ) -> None:
        assert interval_ms > 0 and stale_intervals >= 1 and clock_skew_ms_max >= 0
        self._nodes = frozenset(nodes)
        if len(self._nodes) > HEALTH_NODES_MAX:
            raise ValueError(f"{len(self._nodes)} nodes configured, limit is {HEALTH_NODES_MAX}")
        self._stale_after_ms = interval_ms * stale_intervals
        self._clock_skew_ms_max = clock_skew_ms_max
        self._held: dict[NodeKey, _Held] = {}
        self.counts: dict[Verdict, int] = dict.fromkeys(Verdict, 0)

    def receive(self, subject: str, raw: bytes, *, received_at_ms: int) -> Verdict:
        """One message from ``corridor.health.v1.>``, as it arrived."""
        key = subject_node(subject)
        if key is None:
            return self._count(Verdict.MALFORMED)
        # Before decoding: a flood of invented names costs a set lookup each, nothing more.
        if key not in self._nodes:
            return self._count(Verdict.UNKNOWN_NODE)
        try:
            report = decode_report(raw)
        except (msgspec.DecodeError, ValueError):
            return self._count(Verdict.MALFORMED)
        return self.observe(subject, report, received_at_ms=received_at_ms)

    def observe(self, subject: str, report: HealthReport, *, received_at_ms: int) -> Verdict:
        """A decoded report that arrived on ``subject`` at ``received_at_ms`` (engine clock)."""
        key = subject_node(subject)
        if key is None:
            return self._count(Verdict.MALFORMED)
        if key not in self._nodes:
            return self._count(Verdict.UNKNOWN_NODE)
        if (report.region, report.node) != key:
            return self._count(Verdict.SUBJECT_MISMATCH)
        if report.observed_at_ms - received_at_ms > self._clock_skew_ms_max:
            return self._count(Verdict.FROM_THE_FUTURE)
        observed_at_ms = min(report.observed_at_ms, received_at_ms)
        current = self._held.get(key)
        if current is not None and observed_at_ms < current.observed_at_ms:
            return self._count(Verdict.SUPERSEDED)
        self._held[key] = _Held(report, observed_at_ms)
        assert len(self._held) <= len(self._nodes)
        return self._count(Verdict.ACCEPTED)

    def _count(self, verdict: Verdict) -> Verdict:
        self.counts[verdict] += 1
        return verdict

    def held(self) -> int:
        """Nodes with a report on the board (never more than the configured nodes)."""
        return len(self._held)

    def health(self, region: str, node: str, now_ms: int) -> NodeHealth | None:
        """``None`` when no report was ever seen (the router then treats the node as usable)."""
        held = self._held.get((region, node))
        if held is None:
            return None
        if now_ms - held.observed_at_ms > self._stale_after_ms:
            return NodeHealth(healthy=False, outbound_msat=None)
        return NodeHealth(healthy=held.report.healthy, outbound_msat=held.report.outbound_msat)

    def reports(self) -> Mapping[NodeKey, tuple[HealthReport, int]]:
        """The newest report per node and when the engine takes it as observed (its clock):
        what the metrics show of node health and liquidity."""
        return {key: (held.report, held.observed_at_ms) for key, held in self._held.items()}

    def snapshot(self, now_ms: int) -> Mapping[NodeKey, NodeHealth]:
        """Every reported node's health at ``now_ms``, in the shape ``OrderedRouter`` takes."""
        snapshot = {}
        for region, node in self._held:
            health = self.health(region, node, now_ms)
            assert health is not None
            snapshot[(region, node)] = health
        return snapshot


class HealthListener:
    """The engine's edge for health messages: stamps each with the engine's clock, hands it to
    the board, and logs what was dropped at a bounded rate."""

    def __init__(self, board: HealthBoard, now_ms: Callable[[], int]) -> None:
        self._board = board
        self._now_ms = now_ms
        self._log_after_ms: dict[Verdict, int] = {}
        self._unlogged: dict[Verdict, int] = dict.fromkeys(DROPPED, 0)

    def receive(self, subject: str, raw: bytes) -> Verdict:
        now_ms = self._now_ms()
        verdict = self._board.receive(subject, raw, received_at_ms=now_ms)
        if verdict in DROPPED:
            self._unlogged[verdict] += 1
            if now_ms >= self._log_after_ms.get(verdict, now_ms):
                log.warning(
                    "health_report_dropped",
                    reason=verdict.value,
                    subject=subject[:HEALTH_SUBJECT_LOG_CHARS_MAX],
                    dropped_since_last_log=self._unlogged[verdict],
                    dropped_total=self._board.counts[verdict],
                )
                self._unlogged[verdict] = 0
                self._log_after_ms[verdict] = now_ms + HEALTH_DROP_LOG_INTERVAL_MS
        return verdict
