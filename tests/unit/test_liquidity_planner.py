"""The rebalance planner: which move, from where, why, and never past the fee budget
(ADR 0243)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.liquidity.planner import (
    PROPOSALS_PER_ROUND_MAX,
    NodeState,
    PlanRules,
    Proposal,
    RegionState,
    expected_fee_msat,
    plan,
)
from services.domain.liquidity.targets import Target, Targets

RULES = PlanRules(
    fee_budget_msat_per_day=10_000, fee_ppm_estimate=1_000, fee_base_msat_estimate=1_000,
    move_min_msat=10_000, move_max_msat=5_000_000,
)  # fmt: skip
TARGETS = Targets(default=Target(local_ratio_min_ppm=200_000, local_ratio_max_ppm=800_000))


def _node(region: str, *, sendable: int = 10**9, pubkey: str = "02aa", can_send: bool = True):  # type: ignore[no-untyped-def]
    return NodeState(
        region=region, node=f"{region}-lnd", pubkey=pubkey, max_sendable_msat=sendable,
        inbound_msat=1_000, stale=False, can_send=can_send,
    )  # fmt: skip


def test_a_drained_region_gets_outbound_from_the_region_with_the_largest_surplus() -> None:
    regions = [
        RegionState("us", 1_000_000, 9_000_000, stale=False),  # 10 %: below 20 %
        RegionState("eu", 8_000_000, 2_000_000, stale=False),  # surplus 3,000,000 above 50 %
        RegionState("asia", 6_000_000, 4_000_000, stale=False),  # surplus 1,000,000
    ]
    result = plan(regions, [_node("us"), _node("eu"), _node("asia")], TARGETS, RULES,
                  spent_today_msat={})  # fmt: skip
    (move,) = result.proposals
    assert (move.source_region, move.target_region, move.target_node) == ("eu", "us", "us-lnd")
    assert move.amount_msat == 3_000_000  # us wants 4,000,000 (to 50 %); eu spares 3,000,000
    assert move.expected_fee_msat == expected_fee_msat(3_000_000, RULES) == 4_000
    assert move.max_fee_msat == 8_000 and move.budget_left_msat == 2_000
    assert move.reason == "local_ratio_low" and "us: local_ratio_low (ratio 100000 ppm" in (
        move.explain()
    )


def test_the_day_s_budget_stops_moves_and_says_so() -> None:
    regions = [RegionState("us", 0, 10_000_000, stale=False),
               RegionState("eu", 10_000_000, 0, stale=False)]  # fmt: skip
    result = plan(regions, [_node("us"), _node("eu")], TARGETS, RULES,
                  spent_today_msat={"eu": 9_000})  # fmt: skip
    assert result.proposals == ()
    assert "fee budget of eu spent" in result.skipped[0].reason


def test_a_forecast_need_moves_outbound_though_the_ratio_is_within_its_band() -> None:
    targets = Targets(default=TARGETS.default, dry_within_hours=24)
    regions = [RegionState("us", 3_000_000, 7_000_000, stale=False, hours_until_dry=5),
               RegionState("eu", 9_000_000, 1_000_000, stale=False)]  # fmt: skip
    (move,) = plan(regions, [_node("us"), _node("eu")], targets, RULES,
                   spent_today_msat={}).proposals  # fmt: skip
    assert move.reason == "runs_dry_soon" and move.amount_msat == 2_000_000


def test_stale_regions_and_nodes_that_cannot_send_are_never_used() -> None:
    regions = [RegionState("us", 0, 10_000_000, stale=False),
               RegionState("eu", 10_000_000, 0, stale=True),
               RegionState("asia", 10_000_000, 0, stale=False)]  # fmt: skip
    nodes = [_node("us"), _node("eu"), _node("asia", can_send=False)]
    result = plan(regions, nodes, TARGETS, RULES, spent_today_msat={})
    assert result.proposals == ()
    assert "no region has outbound to spare" in result.skipped[0].reason
    stale_target = [RegionState("us", 0, 10, stale=True), RegionState("eu", 10**7, 0, stale=False)]
    assert plan(stale_target, nodes, TARGETS, RULES, spent_today_msat={}).proposals == ()


def test_a_region_within_its_band_gets_nothing() -> None:
    regions = [RegionState("us", 5_000_000, 5_000_000, stale=False),
               RegionState("eu", 9_000_000, 1_000_000, stale=False)]  # fmt: skip
    assert plan(regions, [_node("us"), _node("eu")], TARGETS, RULES, spent_today_msat={}) == (
        plan([], [], TARGETS, RULES, spent_today_msat={})
    )


@settings(max_examples=200, deadline=None)
@given(
    balances=st.lists(
        st.tuples(st.integers(0, 10**8), st.integers(0, 10**8), st.booleans()),
        min_size=1, max_size=6,
    ),
    spent=st.integers(0, 20_000),
    budget=st.integers(0, 50_000),
)  # fmt: skip
def test_no_round_spends_past_any_region_s_budget_or_sends_more_than_a_node_has(
    balances: list[tuple[int, int, bool]], spent: int, budget: int
) -> None:
    rules = PlanRules(fee_budget_msat_per_day=budget, fee_ppm_estimate=500,
                      fee_base_msat_estimate=100, move_min_msat=1_000,
                      move_max_msat=10**7)  # fmt: skip
    regions = [RegionState(f"r{i}", out, inb, stale=stale)
               for i, (out, inb, stale) in enumerate(balances)]  # fmt: skip
    nodes = [_node(r.region, sendable=r.outbound_msat) for r in regions]
    result = plan(
        regions, nodes, TARGETS, rules, spent_today_msat={r.region: spent for r in regions}
    )
    assert len(result.proposals) <= PROPOSALS_PER_ROUND_MAX
    by_source: dict[str, list[int]] = {}
    for p in result.proposals:
        assert p.source_region != p.target_region
        assert p.expected_fee_msat <= p.max_fee_msat
        assert p.amount_msat >= rules.move_min_msat
        by_source.setdefault(p.source_region, []).append(p.amount_msat + p.max_fee_msat)
        assert spent + sum(q.max_fee_msat for q in result.proposals
                           if q.source_region == p.source_region) <= max(budget, spent)  # fmt: skip
    for region, sent in by_source.items():
        source = next(r for r in regions if r.region == region)
        assert not source.stale and sum(sent) <= source.outbound_msat


def test_the_day_s_budget_stream_counts_spent_fees_and_open_reservations() -> None:
    from services.liquidity.rebalance import budget_used_msat

    def reserved(rid: str, msat: int) -> dict[str, object]:
        data = {"rebalance_id": rid, "source_region": "eu", "day": 1, "reserved_msat": msat,
                "used_before_msat": 0, "budget_msat": 100_000}  # fmt: skip
        return {"type": "RebalanceBudgetReserved", "data": data}

    def released(rid: str, spent: int, back: int) -> dict[str, object]:
        data = {"rebalance_id": rid, "source_region": "eu", "day": 1, "spent_msat": spent,
                "released_msat": back}  # fmt: skip
        return {"type": "RebalanceBudgetReleased", "data": data}

    events = [
        reserved("rbl-a", 24_000),
        released("rbl-a", 3_510, 20_490),  # paid: its fee
        reserved("rbl-b", 24_000),  # open: its whole max fee
        reserved("rbl-c", 24_000),
        released("rbl-c", 0, 24_000),  # failed: nothing
    ]
    assert budget_used_msat(events) == 3_510 + 24_000
    assert budget_used_msat([]) == 0


def test_a_source_that_cannot_keysend_pays_the_target_s_invoice_from_a_receive() -> None:
    from services.liquidity.rebalance import (
        keysend_nodes,
        paying_invoice,
        planner_inputs,
        receive_body,
        request_body,
    )

    corridors = {"corridors": [{"corridor": "us-eu", "candidates": [
        {"region": "us", "node": "us-cln", "keysend": False},
        {"region": "eu", "node": "eu-lnd", "keysend": True},
    ]}]}  # fmt: skip
    view = {
        "regions": [{"region": r, "outbound_msat": 1, "inbound_msat": 1, "stale": False}
                    for r in ("us", "eu")],
        "nodes": [{"region": r, "node": n, "node_pubkey": "02" + "ab" * 32,
                   "max_sendable_msat": 1, "inbound_msat": 1, "stale": False}
                  for r, n in (("us", "us-cln"), ("eu", "eu-lnd"), ("eu", "eu-other"))],
    }  # fmt: skip
    _, nodes = planner_inputs(view, corridors)
    assert {n.node: n.can_send for n in nodes} == {
        "us-cln": True,
        "eu-lnd": True,
        "eu-other": False,  # not in the corridor table
    }
    assert keysend_nodes(corridors) == {("eu", "eu-lnd")}
    proposal = Proposal(
        source_region="us", source_node="us-cln", target_region="eu", target_node="eu-lnd",
        target_pubkey="02" + "ab" * 32, amount_msat=5_000_000, expected_fee_msat=7_000,
        max_fee_msat=14_000, reason="local_ratio_low", target_ratio_ppm=1,
        target_ratio_min_ppm=2, goal_ratio_ppm=3, hours_until_dry=None,
        source_surplus_msat=9, budget_left_msat=10,
    )  # fmt: skip
    receive = receive_body(proposal, caller_id="planner", caller_kind="service", key="k")
    assert (receive["region"], receive["amount_msat"], receive["idempotency_key"]) == (
        "eu",
        5_000_000,
        "k:invoice",
    )
    body = request_body(proposal, caller_id="planner", caller_kind="service", key="k",
                        dry_run=False)  # fmt: skip
    paid = paying_invoice(body, payment_request="lnbcrt1", payee="03" + "cd" * 32, node="eu-2")
    assert (paid["payment_request"], paid["destination"], paid["target_node"]) == (
        "lnbcrt1",
        "03" + "cd" * 32,
        "eu-2",
    )
    assert paid["amount_msat"] == body["amount_msat"] and paid["source_node"] == "us-cln"
