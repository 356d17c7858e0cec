"""The pilot report (ADR 0155): figures per corridor and window, every check at its boundary,
window edges, empty windows, the go/no-go rule, and the thresholds file (ADR 0156)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.pilot_metrics import build as build_pilot_metrics
from schemas.pilot import PilotReport, PilotThresholds
from services.cli import exit_codes
from services.domain.pilot import (
    InvalidWindow,
    UnknownCorridor,
    build_report,
    check_windows,
    consecutive,
    parse_window,
)
from services.domain.pilot.window import DAY_MS, HOUR_MS
from services.pilot.cli import answer
from services.pilot.thresholds_file import (
    DEFAULT_THRESHOLDS_PATH,
    THRESHOLDS_FILE_BYTES_MAX,
    ThresholdsInvalid,
    load_thresholds,
    parse_thresholds,
)
from tests import pilot_stories
from tests.pilot_stories import FoldedSource, Story, recon_events

NOW_MS = 100 * DAY_MS
START_MS = NOW_MS - DAY_MS  # the one-day window [START_MS, NOW_MS)
NODES = {"us-eu": {"eu-lnd"}, "us-asia": {"asia-lnd"}}


def _workload(start_ms: int = START_MS) -> list[Story]:
    """Six intents on us-eu that make every figure non-zero (see each line)."""
    t = start_ms
    return [
        # auto, up to 1k sat: 100 ppm, 100 ms
        Story("a", amount_msat=500_000, received_at_ms=t).dispatched(t + 10).settled(t + 100, 50),
        # review, 1k-10k sat: one failed attempt recovered, 200 ppm, 300 ms
        Story("b", amount_msat=5_000_000, received_at_ms=t, tier="review")
        .dispatched(t + 10).attempt_failed(t + 20).dispatched(t + 30).settled(t + 300, 1_000),
        # approval, 10k-100k sat: an operator approved it, 2000 ppm, 5 s
        Story("c", amount_msat=50_000_000, received_at_ms=t, tier="approval")
        .approval_requested(t).approved(t + 4_000).dispatched(t + 4_100)
        .settled(t + 5_000, 100_000),
        # auto, above 100k sat: 1000 ppm, 200 ms
        Story("d", amount_msat=500_000_000, received_at_ms=t)
        .dispatched(t + 10).settled(t + 200, 500_000),
        # auto: in doubt, an operator resolved it as not paid
        Story("e", amount_msat=1_000_000, received_at_ms=t).dispatched(t + 10).in_doubt(t + 20)
        .resolved(t + 60_000),
        # review: the same
        Story("f", amount_msat=2_000_000, received_at_ms=t, tier="review")
        .dispatched(t + 10).in_doubt(t + 20).resolved(t + 60_000),
    ]  # fmt: skip


def _recon(start_ms: int = START_MS) -> list[dict[str, Any]]:
    # One item resolved in a minute, one open; both on us-eu's node.
    return [
        *recon_events("eu-lnd", "k1", found_at_ms=start_ms + 1_000,
                      resolved_at_ms=start_ms + 61_000),
        *recon_events("eu-lnd", "k2", found_at_ms=start_ms + 2_000),
    ]  # fmt: skip


# What the workload shows, as thresholds met exactly (limit == figure).
AT_THE_FIGURES: dict[str, Any] = {
    "version": 7,
    "min_intents": 6,
    "latency_p95_max_ms": 5_000,
    "route_failure_ratio_max_bps": 4_286,  # 3 of 7 dispatches, rounded up
    "auto_recovery_min_bps": 3_333,  # 1 of 3, rounded down
    "reconciliation_p95_max_ms": 60_000,
    "open_reconciliation_items_max": 1,
    "manual_intervention_rate_max_bps": {"auto": 3_334, "review": 5_000, "approval": 10_000},
    "fee_rate_max_ppm": {"up_to_1k_sat": 100, "1k_to_10k_sat": 200, "10k_to_100k_sat": 2_000,
                         "above_100k_sat": 1_000},
}  # fmt: skip
# Each check, the threshold that holds it, and one step past the figure.
TIGHTER: dict[str, tuple[tuple[str, ...], int]] = {
    "min_intents": (("min_intents",), 7),
    "latency_p95": (("latency_p95_max_ms",), 4_999),
    "route_failure_ratio": (("route_failure_ratio_max_bps",), 4_285),
    "auto_recovery": (("auto_recovery_min_bps",), 3_334),
    "reconciliation_p95": (("reconciliation_p95_max_ms",), 59_999),
    "open_reconciliation_items": (("open_reconciliation_items_max",), 0),
    "manual_intervention.auto": (("manual_intervention_rate_max_bps", "auto"), 3_333),
    "manual_intervention.review": (("manual_intervention_rate_max_bps", "review"), 4_999),
    "manual_intervention.approval": (("manual_intervention_rate_max_bps", "approval"), 9_999),
    "fee_rate.up_to_1k_sat": (("fee_rate_max_ppm", "up_to_1k_sat"), 99),
    "fee_rate.1k_to_10k_sat": (("fee_rate_max_ppm", "1k_to_10k_sat"), 199),
    "fee_rate.10k_to_100k_sat": (("fee_rate_max_ppm", "10k_to_100k_sat"), 1_999),
    "fee_rate.above_100k_sat": (("fee_rate_max_ppm", "above_100k_sat"), 999),
}


def _thresholds(raw: dict[str, Any] | None = None) -> PilotThresholds:
    return msgspec.convert(raw or AT_THE_FIGURES, PilotThresholds)


def _report(
    stories: list[Story],
    recon: list[dict[str, Any]] | None = None,
    *,
    thresholds: PilotThresholds | None = None,
    count: int = 1,
    window_ms: int = DAY_MS,
    only: str | None = "us-eu",
) -> PilotReport:
    source = FoldedSource(pilot_stories.events(stories) + (recon or []))
    return build_report(
        source.docs.values(), source.items, now_ms=NOW_MS, window="1d", window_ms=window_ms,
        count=count, nodes_by_corridor=NODES, thresholds=thresholds or _thresholds(),
        thresholds_source="test", only=only,
    )  # fmt: skip


def test_figures_of_one_window() -> None:
    (window,) = _report(_workload(), _recon()).corridors[0].windows
    f = window.figures
    assert (window.start_ms, window.end_ms) == (START_MS, NOW_MS)
    assert f.intents == 6 and f.settled == 4
    assert (f.latency_ms.p50, f.latency_ms.p95) == (200, 5_000)
    assert f.fee_rate_ppm_by_band == {
        "up_to_1k_sat": 100, "1k_to_10k_sat": 200, "10k_to_100k_sat": 2_000,
        "above_100k_sat": 1_000,
    }  # fmt: skip
    assert (f.route_failures.numerator, f.route_failures.denominator) == (3, 7)
    assert (f.auto_recovery.numerator, f.auto_recovery.denominator) == (1, 3)
    touched = {t: (r.numerator, r.denominator) for t, r in f.manual_intervention_by_tier.items()}
    assert touched == {"auto": (1, 3), "review": (1, 2), "approval": (1, 1)}
    recon = f.reconciliation_time_ms
    assert (recon.resolved, recon.p95, recon.open) == (1, 60_000, 1)
    assert recon.oldest_open_age_ms == DAY_MS - 2_000


def test_thresholds_met_exactly_pass_and_the_verdict_is_go() -> None:
    report = _report(_workload(), _recon())
    (corridor,) = report.corridors
    assert {c.name for c in corridor.windows[0].checks} == set(TIGHTER)
    assert [c.name for c in corridor.windows[0].checks if c.outcome != "pass"] == []
    assert (corridor.verdict, corridor.failing, report.verdict) == ("go", (), "go")


@pytest.mark.parametrize("check", sorted(TIGHTER))
def test_every_check_fails_one_step_past_its_figure(check: str) -> None:
    path, value = TIGHTER[check]
    raw = json.loads(json.dumps(AT_THE_FIGURES))
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    report = _report(_workload(), _recon(), thresholds=_thresholds(raw))
    (corridor,) = report.corridors
    assert corridor.failing == (f"window 1: {check}",)
    assert (corridor.verdict, report.verdict) == ("no-go", "no-go")
    (failed,) = [c for c in corridor.windows[0].checks if c.outcome == "fail"]
    assert failed.limit == value  # the evidence: the figure and the limit it broke
    assert failed.figure is not None and failed.figure != value


def test_too_few_intents_is_insufficient_evidence_and_no_go() -> None:
    report = _report(_workload()[:1], thresholds=_thresholds({**AT_THE_FIGURES, "min_intents": 2}))
    (check,) = [c for c in report.corridors[0].windows[0].checks if c.outcome == "fail"]
    assert (check.name, check.figure, check.detail) == ("min_intents", 1, "insufficient evidence")
    assert report.verdict == "no-go"


def test_intents_none_of_which_settled_fail_latency() -> None:
    t = START_MS
    stories = [Story(f"x{i}", received_at_ms=t).dispatched(t + 1).in_doubt(t + 2) for i in range(6)]
    checks = {c.name: c for c in _report(stories).corridors[0].windows[0].checks}
    assert checks["latency_p95"].outcome == "fail"
    assert checks["latency_p95"].detail == "none of 6 intents settled"
    # Nothing settled in any band, nothing resolved: those are not measured, not passed.
    assert checks["fee_rate.up_to_1k_sat"].outcome == "not_measured"
    assert checks["reconciliation_p95"].outcome == "not_measured"


def test_an_empty_window_is_no_go_for_every_configured_corridor() -> None:
    report = _report([], only=None, count=2)
    assert [c.corridor for c in report.corridors] == ["us-asia", "us-eu"]
    for corridor in report.corridors:
        assert corridor.verdict == "no-go"
        assert corridor.failing == ("window 1: min_intents", "window 2: min_intents")
        checks = {c.name: c.outcome for c in corridor.windows[0].checks}
        assert checks["latency_p95"] == "not_measured"
    assert [f.intents for f in report.all_corridors] == [0, 0]


def test_one_good_window_proves_nothing() -> None:
    # The workload lands in the latest window; the one before it is empty.
    report = _report(_workload(), _recon(), count=2)
    (corridor,) = report.corridors
    first, second = corridor.windows
    assert (first.end_ms, second.start_ms, second.end_ms) == (START_MS, START_MS, NOW_MS)
    assert (first.passed, second.passed) == (False, True)
    assert corridor.verdict == "no-go"
    # Found in the latest window, the items are not open at the end of the one before.
    assert first.figures.reconciliation_time_ms.open == 0
    assert corridor.failing == ("window 1: min_intents",)
    # The same workload in each of two windows: go.
    earlier = _renamed(_workload(START_MS - DAY_MS), "-early")
    report = _report([*earlier, *_workload()], _recon(START_MS - DAY_MS), count=2)
    (corridor,) = report.corridors
    assert [w.figures.intents for w in corridor.windows] == [6, 6]
    # The item left open in window 1 is still open at the end of window 2.
    assert [w.figures.reconciliation_time_ms.open for w in corridor.windows] == [1, 1]
    assert (corridor.verdict, report.verdict) == ("go", "go"), corridor.failing


def _renamed(stories: list[Story], suffix: str) -> list[Story]:
    for story in stories:
        story.intent_id += suffix
        for event in story.events:
            event["stream_id"] = story.intent_id
            if event["type"] == "IntentReceived":
                event["data"]["intent_id"] = story.intent_id
    return stories


def test_window_edges_belong_to_the_later_window() -> None:
    at_boundary = Story("edge", received_at_ms=START_MS)
    at_begin = Story("begin", received_at_ms=START_MS - DAY_MS)
    at_now = Story("now", received_at_ms=NOW_MS)  # [start, end): not yet in any window
    before = Story("before", received_at_ms=START_MS - DAY_MS - 1)
    report = _report([at_boundary, at_begin, at_now, before], count=2)
    assert [w.figures.intents for w in report.corridors[0].windows] == [1, 1]
    assert [f.intents for f in report.all_corridors] == [1, 1]
    assert consecutive(end_ms=10, window_ms=5, count=2) == [(0, 5), (5, 10)]


def test_reconciliation_items_count_for_the_corridor_whose_node_has_them() -> None:
    report = _report(_workload(), _recon(), only=None)
    by_name = {c.corridor: c for c in report.corridors}
    assert by_name["us-eu"].windows[0].figures.reconciliation_time_ms.open == 1
    assert by_name["us-asia"].windows[0].figures.reconciliation_time_ms.open == 0
    assert report.all_corridors[0].reconciliation_time_ms.open == 1


def test_an_item_resolved_after_a_window_is_open_at_its_end() -> None:
    found, resolved = START_MS - 1_000, START_MS + 9_000  # across the boundary
    report = _report([], recon_events("eu-lnd", "k", found_at_ms=found, resolved_at_ms=resolved),
                     count=2)  # fmt: skip
    first, second = (w.figures.reconciliation_time_ms for w in report.corridors[0].windows)
    assert (first.resolved, first.open, first.oldest_open_age_ms) == (0, 1, 1_000)
    assert (second.resolved, second.p95, second.open) == (1, 10_000, 0)


def test_an_unknown_corridor_is_a_usage_error_with_the_field() -> None:
    with pytest.raises(UnknownCorridor) as caught:
        _report(_workload(), only="us-mars")
    assert caught.value.field == "corridor"


@pytest.mark.parametrize(
    ("text", "ms"), [("1h", HOUR_MS), ("36h", 36 * HOUR_MS), ("7d", 7 * DAY_MS),
                     ("90d", 90 * DAY_MS), ("2160h", 90 * DAY_MS)],
)  # fmt: skip
def test_windows_in_hours_or_days(text: str, ms: int) -> None:
    assert parse_window(text) == ms


@pytest.mark.parametrize(
    "text", ["0h", "91d", "2161h", "7w", "7", "d", "", " 7d", "7D", "-1d", "1.5d", "9" * 50 + "d"]
)
def test_bad_windows_are_refused_with_the_field(text: str) -> None:
    with pytest.raises(InvalidWindow) as caught:
        parse_window(text)
    assert (caught.value.code, caught.value.field) == ("invalid_window", "window")
    assert len(caught.value.message) < 200  # a long input is not echoed whole


@pytest.mark.parametrize("count", [0, -1, 13])
def test_window_counts_are_bounded(count: int) -> None:
    with pytest.raises(InvalidWindow) as caught:
        check_windows(count)
    assert (caught.value.field, caught.value.limit) == ("windows", 12)
    assert check_windows(12) == 12 and check_windows(1) == 1


def test_one_all_covering_window_equals_the_demo_metrics_on_the_same_events() -> None:
    recorded = pilot_stories.events(_workload()) + _recon()
    demo = build_pilot_metrics(recorded)
    report = _report(_workload(), _recon(), only=None)
    assert_same_figures(demo, msgspec.to_builtins(report.all_corridors[0]))


def assert_same_figures(demo: dict[str, Any], figures: dict[str, Any]) -> None:
    """The demo report's figures (``projections.pilot_metrics``) against a pilot report's
    ``Figures`` as JSON: the same numbers, the demo's ratios rounded from the same counts."""

    def ratio(r: dict[str, int]) -> float | None:
        return round(r["numerator"] / r["denominator"], 4) if r["denominator"] else None

    for key in ("intents", "by_state", "settled", "fee_rate_ppm_by_band", "failures_by_reason",
                "anomalies"):  # fmt: skip
        assert demo[key] == figures[key], key
    if "settled_msat" in demo:
        assert (demo["settled_msat"], demo["fees_msat"]) == (
            figures["settled_msat"], figures["fees_msat"])  # fmt: skip
    latency = demo.get("latency_ms") or demo["timings"]["latency_ms"]
    assert latency == figures["latency_ms"]
    assert demo["route_failure_ratio"] == ratio(figures["route_failures"])
    assert demo["auto_recovery_rate"] == ratio(figures["auto_recovery"])
    tiers = demo["interventions_by_tier"]
    assert {t: tiers[t] for t in figures["intents_by_tier"]} == figures["intents_by_tier"]
    assert (tiers["operator_approved"], tiers["operator_rejected"]) == (
        figures["operator_approved"], figures["operator_rejected"])  # fmt: skip
    recon = {
        k: v for k, v in figures["reconciliation_time_ms"].items() if k != "oldest_open_age_ms"
    }
    assert {k: v for k, v in demo["reconciliation_time_ms"].items()
            if k != "oldest_open_age_ms"} == recon  # fmt: skip


# The thresholds file.


def test_the_shipped_thresholds_load_and_their_version_is_their_name() -> None:
    thresholds = load_thresholds()
    assert DEFAULT_THRESHOLDS_PATH.name == f"v{thresholds.version}.toml"
    assert thresholds.min_intents >= 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("min_intents = 100", "min_intents = 100\nmin_intent = 5"), "min_intent"),
        (("auto = 100", "auto = 10_001"), "manual_intervention_rate_max_bps.auto"),
        (("1k_to_10k_sat = 5_000", "1k_to_10k = 5_000"), "fee_rate_max_ppm.1k_to_10k"),
        (("latency_p95_max_ms = 120_000", 'latency_p95_max_ms = "2m"'), "latency_p95_max_ms"),
        (("min_intents = 100", "min_intents = 0"), "min_intents"),
        (("version = 1", ""), "version"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_field(change: tuple[str, str], field: str) -> None:
    text = DEFAULT_THRESHOLDS_PATH.read_text()
    assert change[0] in text
    with pytest.raises(ThresholdsInvalid) as caught:
        parse_thresholds(text.replace(change[0], change[1], 1))
    assert (caught.value.code, caught.value.field) == ("invalid_pilot_thresholds", field)


def test_a_thresholds_file_that_is_not_toml_or_too_large_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ThresholdsInvalid, match="not valid TOML"):
        parse_thresholds("version = = 1")
    big = tmp_path / "big.toml"
    big.write_text("#" * (THRESHOLDS_FILE_BYTES_MAX + 1))
    with pytest.raises(ThresholdsInvalid) as caught:
        load_thresholds(big)
    assert caught.value.limit == THRESHOLDS_FILE_BYTES_MAX
    with pytest.raises(ThresholdsInvalid):
        load_thresholds(tmp_path / "missing.toml")


# The command's answer: output and exit code, over a source that folds the events.


def _args(**over: Any) -> argparse.Namespace:
    base = {"window": "1d", "windows": 1, "corridor": "us-eu", "thresholds": None, "json": True}
    return argparse.Namespace(**{**base, **over})


def _answer(args: argparse.Namespace, source: FoldedSource) -> tuple[int, str]:
    import asyncio

    out = io.StringIO()
    code = asyncio.run(answer(args, source, now_ms=NOW_MS, nodes_by_corridor=NODES, out=out))
    return code, out.getvalue()


def test_the_command_says_go_with_exit_0_and_no_go_with_its_own_code(tmp_path: Path) -> None:
    source = FoldedSource(pilot_stories.events(_workload()) + _recon())
    exact = tmp_path / "exact.toml"
    exact.write_text(_toml(AT_THE_FIGURES))
    code, out = _answer(_args(thresholds=exact), source)
    report = msgspec.json.decode(out, type=PilotReport)  # the JSON is the schema's
    assert (code, report.verdict, report.thresholds_version) == (exit_codes.OK, "go", 7)
    assert report.thresholds_source == str(exact)
    # Two windows with the shipped thresholds: no-go, exit 4, the failing checks named.
    code, out = _answer(_args(windows=2, json=False), source)
    assert code == exit_codes.NO_GO == 4
    assert "us-eu: no-go" in out and "window 1: min_intents" in out
    assert "Verdict: no-go (us-eu no-go)" in out


def test_the_command_refuses_bad_input_with_a_coded_error(tmp_path: Path) -> None:
    source = FoldedSource([])
    code, out = _answer(_args(window="8w"), source)
    assert code == exit_codes.USAGE
    assert json.loads(out)["error"]["code"] == "invalid_window"
    assert json.loads(out)["error"]["field"] == "window"
    bad = tmp_path / "bad.toml"
    bad.write_text(_toml({**AT_THE_FIGURES, "latency_p95_ms": 1}))
    code, out = _answer(_args(thresholds=bad), source)
    assert code == exit_codes.USAGE
    assert json.loads(out)["error"]["field"] == "latency_p95_ms"


def _toml(raw: dict[str, Any]) -> str:
    flat = [f"{k} = {v}" for k, v in raw.items() if not isinstance(v, dict)]
    tables = [
        f"[{k}]\n" + "\n".join(f'"{kk}" = {vv}' for kk, vv in v.items())
        for k, v in raw.items()
        if isinstance(v, dict)
    ]
    return "\n".join(flat) + "\n\n" + "\n\n".join(tables) + "\n"


# Properties: windows partition the span, corridors partition each window.


@given(
    st.lists(
        st.tuples(st.integers(-3 * DAY_MS - HOUR_MS, HOUR_MS), st.sampled_from(sorted(NODES))),
        max_size=30,
    )
)
@settings(max_examples=60, deadline=None)
def test_windows_and_corridors_partition_the_intents(received: list[tuple[int, str]]) -> None:
    stories = [
        Story(f"i{n}", received_at_ms=NOW_MS + offset, corridor=corridor)
        for n, (offset, corridor) in enumerate(received)
    ]
    report = _report(stories, count=3, only=None)
    in_span = sum(1 for offset, _ in received if -3 * DAY_MS <= offset < 0)
    assert sum(f.intents for f in report.all_corridors) == in_span
    for index, total in enumerate(report.all_corridors):
        assert sum(c.windows[index].figures.intents for c in report.corridors) == total.intents
    # Nothing here settles: a window either lacks intents or fails latency, never passes.
    assert report.verdict == "no-go"
