"""The health board trusts only what it can check (ADR 0062): configured nodes, the subject's
node, and the engine's clock. Pure tests; the engine's wiring is in
tests/integration/test_health_trust.py."""

from __future__ import annotations

import msgspec
import structlog.testing
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import encode
from services.domain.routing import CorridorTable, OrderedRouter, RouteCandidate, RouteDecision
from services.executor.health import (
    HEALTH_CLOCK_SKEW_MS_MAX,
    HEALTH_DROP_LOG_INTERVAL_MS,
    HEALTH_REPORT_BYTES_MAX,
    HealthBoard,
    HealthListener,
    HealthReport,
    Verdict,
    health_subject,
    subject_node,
)

NODES = (("us", "us-lnd"), ("eu", "eu-lnd"))
INTERVAL_MS = 1_000
STALE_AFTER_MS = 3 * INTERVAL_MS
YEAR_3000_MS = 32_503_680_000_000


def _board() -> HealthBoard:
    return HealthBoard(nodes=NODES, interval_ms=INTERVAL_MS, stale_intervals=3)


def _report(
    observed_at_ms: int, *, healthy: bool = True, region: str = "us", node: str = "us-lnd"
) -> HealthReport:
    return HealthReport(
        node=node, region=region, healthy=healthy, outbound_msat=5_000_000, inbound_msat=1,
        channels=2, observed_at_ms=observed_at_ms, executor_id=node,
    )  # fmt: skip


def _send(board: HealthBoard, report: HealthReport, received_at_ms: int) -> Verdict:
    subject = health_subject(report.region, report.node)
    return board.receive(subject, encode(report), received_at_ms=received_at_ms)


def test_a_year_3000_report_is_dropped_and_genuine_reports_route() -> None:
    board = _board()
    now_ms = 1_700_000_000_000
    assert _send(board, _report(YEAR_3000_MS, healthy=False), now_ms) == Verdict.FROM_THE_FUTURE
    assert _send(board, _report(now_ms + 50), now_ms + 100) == Verdict.ACCEPTED
    table = CorridorTable(corridors={"us-eu": (RouteCandidate(region="us", node="us-lnd"),)})
    choice = OrderedRouter(table, board.snapshot(now_ms + 200)).choose(
        "us-eu", amount_msat=1_000, exclude_nodes=frozenset()
    )
    assert isinstance(choice, RouteDecision) and choice.node == "us-lnd"


def test_the_skew_limit_is_the_boundary() -> None:
    board = _board()
    now_ms = 50_000
    ahead = _report(now_ms + HEALTH_CLOCK_SKEW_MS_MAX + 1)
    assert _send(board, ahead, now_ms) == Verdict.FROM_THE_FUTURE
    assert board.health("us", "us-lnd", now_ms) is None
    assert _send(board, _report(now_ms + HEALTH_CLOCK_SKEW_MS_MAX), now_ms) == Verdict.ACCEPTED


def test_a_report_dated_ahead_within_the_skew_cannot_pin_the_board() -> None:
    board = _board()
    now_ms = 50_000
    forged = _report(now_ms + HEALTH_CLOCK_SKEW_MS_MAX, healthy=False)
    assert _send(board, forged, now_ms) == Verdict.ACCEPTED
    # A genuine report observed and received a moment later replaces it: the forged one
    # counts as observed when it was received, not when it claims.
    assert _send(board, _report(now_ms + 10), now_ms + 10) == Verdict.ACCEPTED
    health = board.health("us", "us-lnd", now_ms + 20)
    assert health is not None and health.healthy
    # And it ages from its receipt: no report for longer than the stale limit is unhealthy.
    late = board.health("us", "us-lnd", now_ms + 10 + STALE_AFTER_MS + 1)
    assert late is not None and not late.healthy


def test_an_older_report_does_not_replace_a_newer_one() -> None:
    board = _board()
    assert _send(board, _report(10_000), 10_005) == Verdict.ACCEPTED
    assert _send(board, _report(9_000, healthy=False), 10_010) == Verdict.SUPERSEDED
    fresh = board.health("us", "us-lnd", 13_000)
    assert fresh is not None and fresh.healthy and fresh.outbound_msat == 5_000_000
    stale = board.snapshot(13_001)[("us", "us-lnd")]
    assert msgspec.to_builtins(stale) == {"healthy": False, "outbound_msat": None}


def test_a_report_delayed_in_transit_ages_from_when_it_was_observed() -> None:
    board = _board()
    # Observed at 10 s, received at 12.5 s: half a second of life left, not three seconds.
    assert _send(board, _report(10_000), 12_500) == Verdict.ACCEPTED
    assert board.health("us", "us-lnd", 13_000).healthy  # type: ignore[union-attr]
    assert not board.health("us", "us-lnd", 13_001).healthy  # type: ignore[union-attr]


def test_unknown_node_names_do_not_grow_the_board() -> None:
    board = _board()
    for number in range(10_000):
        node = f"forged-{number}"
        assert _send(board, _report(1_000, node=node), 1_000) == Verdict.UNKNOWN_NODE
    # A configured node's name in another region is another node.
    assert _send(board, _report(1_000, region="asia"), 1_000) == Verdict.UNKNOWN_NODE
    assert board.held() == 0 and board.snapshot(1_000) == {}
    assert board.counts[Verdict.UNKNOWN_NODE] == 10_001


def test_a_payload_that_disagrees_with_its_subject_is_dropped() -> None:
    board = _board()
    about_eu = _report(1_000, region="eu", node="eu-lnd", healthy=False)
    verdict = board.receive(health_subject("us", "us-lnd"), encode(about_eu), received_at_ms=1_000)
    assert verdict == Verdict.SUBJECT_MISMATCH
    assert board.held() == 0


def test_malformed_messages_are_dropped() -> None:
    board = _board()
    subject = health_subject("us", "us-lnd")
    padded = encode(_report(1_000))[:-1] + b" " * HEALTH_REPORT_BYTES_MAX + b"}"
    for raw in (b"", b"{}", b"not json", padded):
        assert board.receive(subject, raw, received_at_ms=1_000) == Verdict.MALFORMED
    for bad_subject in ("corridor.health.v1.us", "corridor.health.v1.us.us-lnd.x", "a.b.c.us.n"):
        raw = encode(_report(1_000))
        assert board.receive(bad_subject, raw, received_at_ms=1_000) == Verdict.MALFORMED
    assert board.held() == 0 and board.counts[Verdict.MALFORMED] == 7


def test_subject_node_reads_only_the_health_shape() -> None:
    assert subject_node("corridor.health.v1.us.us-lnd") == ("us", "us-lnd")
    assert subject_node("corridor.health.v2.us.us-lnd") is None
    assert subject_node("corridor.health.v1..us-lnd") is None


def test_the_listener_logs_drops_at_a_bounded_rate() -> None:
    board = _board()
    clock = [0]
    listener = HealthListener(board, lambda: clock[0])
    with structlog.testing.capture_logs() as logged:
        for number in range(1_000):
            clock[0] = number  # a thousand forged names within one second
            raw = encode(_report(clock[0], node=f"x{number}"))
            listener.receive(health_subject("us", f"x{number}"), raw)
        clock[0] = HEALTH_DROP_LOG_INTERVAL_MS + 999
        listener.receive(health_subject("us", "x"), encode(_report(clock[0], node="x")))
    drops = [entry for entry in logged if entry["event"] == "health_report_dropped"]
    assert [entry["dropped_since_last_log"] for entry in drops] == [1, 1_000]
    assert board.counts[Verdict.UNKNOWN_NODE] == 1_001


@given(
    forged=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),  # received, ms after the start
            st.integers(min_value=-(10**12), max_value=YEAR_3000_MS),  # claimed time
            st.booleans(),
        ),
        max_size=20,
    ),
    genuine_at_ms=st.integers(min_value=0, max_value=10_000),
    ahead_ms=st.integers(min_value=0, max_value=HEALTH_CLOCK_SKEW_MS_MAX),
)
def test_a_genuine_report_received_after_any_forgeries_is_what_the_board_says(
    forged: list[tuple[int, int, bool]], genuine_at_ms: int, ahead_ms: int
) -> None:
    """Whatever the forged reports claimed, a genuine report received after them is what the
    router sees, from a clock in step with the engine's or ahead within the limit. (A genuine
    clock running behind loses to a forgery dated "now" for as long as it is behind: the
    subject's permissions are the defence there, ADR 0062.)"""
    board = _board()
    start_ms = 1_700_000_000_000
    for received_ms, claimed_ms, healthy in sorted(f for f in forged if f[0] <= genuine_at_ms):
        _send(board, _report(claimed_ms, healthy=healthy), start_ms + received_ms)
    received_at_ms = start_ms + genuine_at_ms
    genuine = _report(received_at_ms + ahead_ms, healthy=True)
    assert _send(board, genuine, received_at_ms) == Verdict.ACCEPTED
    health = board.health("us", "us-lnd", received_at_ms)
    assert health is not None and health.healthy
