"""The liquidity view, its targets and the outflow forecast: pure code over given snapshots
and a given clock (ADR 0240, 0241)."""

from __future__ import annotations

import pytest

from projections.liquidity import LiquidityBook
from schemas.codec import encode
from services.domain.liquidity.forecast import HOUR_MS, Outflow, hours_until_dry, outflows
from services.domain.liquidity.targets import AlertKind, Target, Targets, Totals, breaches
from services.executor.channel_snapshot import (
    SNAPSHOT_BYTES_MAX,
    SNAPSHOT_CHANNELS_MAX,
    ChannelRow,
    ChannelSnapshot,
    snapshot_subject,
)
from services.liquidity.config import parse_targets

INTERVAL_MS = 5_000
T0_MS = 1_800_000_000_000
PEER = "02" + "ab" * 32


def _row(channel_id: str, local_msat: int, remote_msat: int, *, active: bool = True) -> ChannelRow:
    return ChannelRow(
        channel_id=channel_id, peer_pubkey=PEER, capacity_msat=local_msat + remote_msat,
        local_balance_msat=local_msat, remote_balance_msat=remote_msat, active=active,
        pending_htlcs_msat=7, fee_base_msat=1000, fee_ppm=100,
    )  # fmt: skip


def _snapshot(
    region: str, node: str, *rows: ChannelRow, at_ms: int = T0_MS, reachable: bool = True
) -> ChannelSnapshot:
    return ChannelSnapshot(
        node=node, region=region, executor_id=f"{node}-1", observed_at_ms=at_ms,
        reachable=reachable, channels=rows, channels_total=len(rows),
    )  # fmt: skip


def _receive(book: LiquidityBook, snap: ChannelSnapshot, at_ms: int = T0_MS) -> bool:
    subject = snapshot_subject(snap.region, snap.node)
    return book.receive(subject, encode(snap), received_at_ms=at_ms)


def test_the_view_sums_active_channels_per_region_and_keeps_every_row() -> None:
    book = LiquidityBook(interval_ms=INTERVAL_MS)
    assert _receive(book, _snapshot("us", "us-lnd", _row("1", 800, 200), _row("2", 100, 900)))
    assert _receive(book, _snapshot("us", "us-cln", _row("3", 50, 50, active=False)))
    assert _receive(book, _snapshot("eu", "eu-lnd", _row("4", 300, 700)))
    view = book.view(T0_MS + 1_000)
    us = next(r for r in view["regions"] if r["region"] == "us")
    assert (us["nodes"], us["channels"], us["active_channels"]) == (2, 3, 2)
    assert (us["outbound_msat"], us["inbound_msat"]) == (900, 1100)
    assert us["local_ratio_ppm"] == 900 * 1_000_000 // 2000
    assert us["pending_htlcs_msat"] == 21 and us["data_age_ms"] == 1_000 and not us["stale"]
    assert [c["channel_id"] for c in view["channels"]] == ["4", "3", "1", "2"]
    row = view["channels"][0]
    assert (row["peer_pubkey"], row["fee_base_msat"], row["fee_ppm"]) == (PEER, 1000, 100)


def test_old_data_is_flagged_stale_and_an_unreachable_node_keeps_its_last_rows() -> None:
    book = LiquidityBook(interval_ms=INTERVAL_MS)
    _receive(book, _snapshot("us", "us-lnd", _row("1", 800, 200)))
    assert not book.view(T0_MS + 3 * INTERVAL_MS)["regions"][0]["stale"]
    assert book.view(T0_MS + 3 * INTERVAL_MS + 1)["regions"][0]["stale"]
    # The node stops answering: its rows stay, aged from when it last answered, flagged.
    later = T0_MS + INTERVAL_MS
    assert _receive(book, _snapshot("us", "us-lnd", at_ms=later, reachable=False), at_ms=later)
    view = book.view(later)
    assert view["regions"][0]["stale"] and view["regions"][0]["outbound_msat"] == 800
    assert view["channels"][0]["stale"] and view["channels"][0]["data_age_ms"] == INTERVAL_MS


def test_a_late_older_snapshot_does_not_replace_a_newer_one() -> None:
    book = LiquidityBook(interval_ms=INTERVAL_MS)
    _receive(book, _snapshot("us", "us-lnd", _row("1", 800, 200), at_ms=T0_MS + 10), T0_MS + 10)
    assert not _receive(book, _snapshot("us", "us-lnd", _row("1", 1, 999)), at_ms=T0_MS + 20)
    assert book.view(T0_MS + 20)["regions"][0]["outbound_msat"] == 800


def test_a_snapshot_is_dated_no_later_than_it_was_received() -> None:
    book = LiquidityBook(interval_ms=INTERVAL_MS)
    _receive(book, _snapshot("us", "us-lnd", _row("1", 8, 2), at_ms=T0_MS + 10**9), at_ms=T0_MS)
    assert book.view(T0_MS + 100)["regions"][0]["data_age_ms"] == 100


@pytest.mark.parametrize(
    ("subject", "raw"),
    [
        (snapshot_subject("us", "eu-lnd"), encode(_snapshot("us", "us-lnd"))),  # subject lies
        ("corridor.liquidity.v1.us", encode(_snapshot("us", "us-lnd"))),  # not a node subject
        (snapshot_subject("us", "us-lnd"), b"{}"),
        (snapshot_subject("us", "us-lnd"), b"x" * (SNAPSHOT_BYTES_MAX + 1)),
        (
            snapshot_subject("us", "us-lnd"),
            encode(_snapshot("us", "us-lnd")).replace(
                b'"channels_total":0', b'"channels_total":-1'
            ),
        ),
        (
            snapshot_subject("us", "us-lnd"),
            encode(_snapshot("us", "us-lnd", *[_row(str(i), 1, 1) for i in range(257)])),
        ),
    ],
)
def test_what_is_not_a_snapshot_of_its_subject_is_dropped(subject: str, raw: bytes) -> None:
    book = LiquidityBook(interval_ms=INTERVAL_MS)
    assert SNAPSHOT_CHANNELS_MAX == 256
    assert not book.receive(subject, raw, received_at_ms=T0_MS)
    assert book.view(T0_MS)["regions"] == []


def test_the_book_holds_at_most_its_node_limit() -> None:
    book = LiquidityBook(interval_ms=INTERVAL_MS, nodes_max=2)
    assert _receive(book, _snapshot("us", "a"))
    assert _receive(book, _snapshot("us", "b"))
    assert not _receive(book, _snapshot("us", "c"))
    assert _receive(book, _snapshot("us", "a", at_ms=T0_MS + 1), at_ms=T0_MS + 1)
    assert book.nodes() == {("us", "a"), ("us", "b")}


def test_a_truncated_snapshot_says_so() -> None:
    snap = ChannelSnapshot(
        node="n", region="us", executor_id="e", observed_at_ms=T0_MS, reachable=True,
        channels=(_row("1", 1, 1),), channels_total=300,
    )  # fmt: skip
    book = LiquidityBook(interval_ms=INTERVAL_MS)
    assert _receive(book, snap)
    assert snap.truncated and book.view(T0_MS)["regions"][0]["truncated"]


def test_breaches_of_region_and_peer_targets_become_alerts() -> None:
    targets = parse_targets(
        Target(local_ratio_min_ppm=200_000),
        {"eu": {"local_ratio_max_ppm": 600_000, "inbound_min_msat": 1_000},
         f"us/{PEER}": {"local_ratio_min_ppm": 900_000}},
        dry_within_hours=24,
    )  # fmt: skip
    book = LiquidityBook(interval_ms=INTERVAL_MS)
    _receive(book, _snapshot("us", "us-lnd", _row("1", 100, 900)))  # 10 % outbound
    _receive(book, _snapshot("eu", "eu-lnd", _row("2", 900, 100)))  # 90 % outbound, 100 inbound
    view = book.view(T0_MS, targets, {"eu": Outflow("eu", 90, HOUR_MS)})
    kinds = [(a["region"], a["peer"], a["kind"]) for a in view["alerts"]]
    assert kinds == [
        ("eu", None, "inbound_low"),
        ("eu", None, "local_ratio_high"),
        ("eu", None, "runs_dry_soon"),  # 900 msat at 90 msat an hour: 10 h < 24 h
        ("us", None, "local_ratio_low"),
        ("us", PEER, "local_ratio_low"),
    ]
    eu = next(r for r in view["regions"] if r["region"] == "eu")
    assert (eu["hours_until_dry"], eu["outflow_msat_per_hour"], eu["alerts"]) == (10, 90, 3)


def test_a_stale_scope_raises_stale_only() -> None:
    alerts = breaches(Totals("us", 0, 100, stale=True), Target(local_ratio_min_ppm=500_000))
    assert [a.kind for a in alerts] == [AlertKind.STALE]


def test_the_forecast_counts_settlements_of_the_window_per_region_in_integers() -> None:
    now = T0_MS
    docs = [
        {"region": "us", "settled_at_ms": now - 10, "amount_msat": 1_000, "fee_msat": 3},
        {"region": "us", "settled_at_ms": now - HOUR_MS, "amount_msat": 10**9, "fee_msat": 0},
        {"region": "us", "settled_at_ms": None, "amount_msat": 10**9, "fee_msat": None},
        {"region": "eu", "settled_at_ms": now, "amount_msat": 500, "fee_msat": None},
    ]
    flows = outflows(docs, now_ms=now, window_ms=HOUR_MS)
    assert flows["us"].msat_per_hour == 1_003 and flows["eu"].msat_per_hour == 500
    assert hours_until_dry(10_030, flows["us"]) == 10
    assert hours_until_dry(10_030, None) is None
    assert outflows(docs, now_ms=now, window_ms=2 * HOUR_MS)["us"].msat_per_hour == 500_000_501


@pytest.mark.parametrize(
    "entries",
    [
        {"us": {"local_ratio": 1}},
        {"us": {"local_ratio_min_ppm": 700_000, "local_ratio_max_ppm": 600_000}},
        {"/02ab": {"inbound_min_msat": 1}},
        {"us": {"inbound_min_msat": -1}},
    ],
)
def test_targets_that_are_not_targets_are_refused(entries: dict[str, dict[str, int]]) -> None:
    with pytest.raises(ValueError, match="liquidity_targets"):
        parse_targets(Target(), entries)


def test_targets_default_from_settings_and_are_overridden_per_key() -> None:
    targets = parse_targets(Target(inbound_min_msat=5), {"eu": {"local_ratio_min_ppm": 1}})
    assert targets.for_region("us") == Target(inbound_min_msat=5)
    assert targets.for_region("eu") == Target(local_ratio_min_ppm=1, inbound_min_msat=5)
    assert isinstance(targets, Targets)


def test_liquidity_alerts_join_the_exception_queue() -> None:
    from projections.exception_queue import exception_queue

    book = LiquidityBook(interval_ms=INTERVAL_MS)
    _receive(book, _snapshot("us", "us-lnd", _row("1", 100, 900)))
    alerts = book.view(T0_MS, Targets(default=Target(local_ratio_min_ppm=200_000)))["alerts"]
    rows = exception_queue([], [], now_ms=T0_MS, stuck_after_ms=1, liquidity_alerts=alerts)
    assert [(r["kind"], r["region"], r["key"]) for r in rows] == [
        ("liquidity:local_ratio_low", "us", "liquidity:us:-:local_ratio_low")
    ]
    assert rows[0]["detail"] == "us local_ratio_low: 100000 (target 200000)"
