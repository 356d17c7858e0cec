"""Circular moves the planner proposes (ADR 0281): one node's channel above its max local
ratio pays back into another of its channels below its min, toward another peer, within the
day's fee budget of the node's region, with an explanation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.liquidity.circles import ChannelState, CircleNode, plan_circles
from services.domain.liquidity.planner import PlanRules, expected_fee_msat
from services.domain.liquidity.targets import Target, Targets

RULES = PlanRules(
    fee_budget_msat_per_day=10_000, fee_ppm_estimate=1_000, fee_base_msat_estimate=1_000,
    move_min_msat=10_000, move_max_msat=5_000_000,
)  # fmt: skip
TARGETS = Targets(default=Target(local_ratio_min_ppm=200_000, local_ratio_max_ppm=800_000))
PEER_A, PEER_B, PEER_C = "02" + "aa" * 32, "02" + "bb" * 32, "02" + "cc" * 32
ME = "03" + "11" * 32


def _channel(scid: str, peer: str, local: int, remote: int, active: bool = True) -> ChannelState:
    return ChannelState(channel_id=scid, peer_pubkey=peer, local_balance_msat=local,
                        remote_balance_msat=remote, active=active)  # fmt: skip


def _node(*channels: ChannelState, can_circle: bool = True, stale: bool = False) -> CircleNode:
    return CircleNode(region="us", node="us-lnd", pubkey=ME, stale=stale,
                      can_circle=can_circle, channels=channels)  # fmt: skip


def test_a_full_channel_pays_into_a_drained_one_toward_another_peer_with_why() -> None:
    node = _node(
        _channel("700x1x0", PEER_A, 9_000_000, 1_000_000),  # 90 %: above 80 %
        _channel("700x2x0", PEER_B, 1_000_000, 9_000_000),  # 10 %: below 20 %
        _channel("700x3x0", PEER_C, 5_000_000, 5_000_000),  # within the band
    )
    circles, skipped = plan_circles([node], TARGETS, RULES, budget_left_msat={"us": 10_000})
    assert skipped == ()
    (circle,) = circles
    assert (circle.outgoing_channel_id, circle.last_hop_pubkey) == ("700x1x0", PEER_B)
    assert (circle.region, circle.node, circle.pubkey) == ("us", "us-lnd", ME)
    # To the middle of the band (50 %): 4,000,000 out of the full one, capped at move_max.
    assert circle.amount_msat == 4_000_000
    assert circle.expected_fee_msat == expected_fee_msat(4_000_000, RULES) == 5_000
    assert circle.max_fee_msat == 10_000 and circle.budget_left_msat == 0
    assert "700x1x0" in circle.explain() and "900000 ppm" in circle.explain()
    assert circle.explanation()["reason"] == "channel_ratio_out_of_band"


def test_no_circle_without_a_channel_below_its_min_toward_another_peer() -> None:
    full = _channel("700x1x0", PEER_A, 9_000_000, 1_000_000)
    same_peer = _channel("700x2x0", PEER_A, 1_000_000, 9_000_000)
    assert plan_circles([_node(full, same_peer)], TARGETS, RULES,
                        budget_left_msat={"us": 10_000}) == ((), ())  # fmt: skip
    drained = _channel("700x3x0", PEER_B, 1_000_000, 9_000_000)
    for node in (
        _node(full, drained, can_circle=False),
        _node(full, drained, stale=True),
        _node(full, _channel("700x3x0", PEER_B, 1_000_000, 9_000_000, False)),
    ):
        assert plan_circles([node], TARGETS, RULES, budget_left_msat={"us": 10_000}) == ((), ())


def test_the_day_s_budget_stops_a_circle_and_says_so() -> None:
    node = _node(_channel("700x1x0", PEER_A, 9_000_000, 1_000_000),
                 _channel("700x2x0", PEER_B, 1_000_000, 9_000_000))  # fmt: skip
    circles, skipped = plan_circles([node], TARGETS, RULES, budget_left_msat={"us": 4_999})
    assert circles == () and len(skipped) == 1
    assert "fee budget" in skipped[0].reason


def test_a_peer_target_overrides_the_region_s() -> None:
    targets = Targets(default=TARGETS.default,
                      peers={("us", PEER_A): Target(local_ratio_max_ppm=950_000)})  # fmt: skip
    node = _node(_channel("700x1x0", PEER_A, 9_000_000, 1_000_000),
                 _channel("700x2x0", PEER_B, 1_000_000, 9_000_000))  # fmt: skip
    assert plan_circles([node], targets, RULES, budget_left_msat={"us": 10_000}) == ((), ())


_balances = st.tuples(st.integers(0, 10**8), st.integers(0, 10**8), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(_balances, min_size=0, max_size=6), st.integers(0, 50_000))
def test_no_round_spends_past_the_budget_or_moves_more_than_the_channel_has(
    rows: list[tuple[int, int, bool]], budget_msat: int
) -> None:
    channels = tuple(
        _channel(f"700x{i}x0", f"02{i:02x}" + "dd" * 31, local, remote, active)
        for i, (local, remote, active) in enumerate(rows)
    )
    circles, _ = plan_circles([_node(*channels)], TARGETS, RULES,
                              budget_left_msat={"us": budget_msat})  # fmt: skip
    assert sum(c.max_fee_msat for c in circles) <= budget_msat
    by_id = {c.channel_id: c for c in channels}
    for circle in circles:
        out = by_id[circle.outgoing_channel_id]
        assert out.peer_pubkey != circle.last_hop_pubkey
        assert circle.amount_msat + circle.max_fee_msat <= out.local_balance_msat
        assert RULES.move_min_msat <= circle.amount_msat <= RULES.move_max_msat


def test_a_circle_s_request_is_a_valid_circular_rebalance_and_shares_the_day_s_budget() -> None:
    import msgspec

    from schemas.rebalance_messages import RequestRebalance
    from services.domain.liquidity.planner import Proposal
    from services.liquidity.rebalance import budget_left_after, circle_body

    node = _node(_channel("700x1x0", PEER_A, 9_000_000, 1_000_000),
                 _channel("700x2x0", PEER_B, 1_000_000, 9_000_000))  # fmt: skip
    (circle,), _ = plan_circles([node], TARGETS, RULES, budget_left_msat={"us": 10_000})
    body = circle_body(circle, caller_id="planner", caller_kind="service", key="k", dry_run=True)
    request = msgspec.convert({k: v for k, v in body.items() if k != "type"}, RequestRebalance)
    assert request.mode == "circular" and request.destination == ME
    assert (request.source_node, request.target_node) == ("us-lnd", "us-lnd")
    assert (request.outgoing_channel_id, request.last_hop_pubkey) == ("700x1x0", PEER_B)
    move = Proposal(
        source_region="us", source_node="us-lnd", target_region="eu", target_node="eu-lnd",
        target_pubkey=ME, amount_msat=1, expected_fee_msat=1, max_fee_msat=3_000, reason="x",
        target_ratio_ppm=None, target_ratio_min_ppm=0, goal_ratio_ppm=0, hours_until_dry=None,
        source_surplus_msat=0, budget_left_msat=0,
    )  # fmt: skip
    left = budget_left_after(10_000, {"us": 4_000}, [move], ["us", "eu"])
    assert left == {"us": 3_000, "eu": 10_000}
