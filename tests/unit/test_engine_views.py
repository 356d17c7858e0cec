"""Read-side replies (``services.engine.views``) and the fee allowance a client may compute."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from schemas import codec, errors
from schemas.commands import SubmitPaymentIntent
from schemas.common import Caller
from schemas.policy_document import PPM, FeeCaps
from schemas.policy_messages import GetPolicy, ListCorridors
from schemas.replies import CorridorsView, PolicyView
from services.domain.policy import PolicyDocumentAggregate, decide_policy, evolve_policy, rules
from services.domain.policy.engine import PolicyEngine
from services.domain.routing import CorridorTable, RouteCandidate
from services.engine.views import corridors_view, policy_view
from services.policy.loader import load_default_policy

NOW_MS = 1_700_000_000_000
DEFAULT = load_default_policy()
AMOUNT_MAX_MSAT = 10**15


def test_policy_view_lists_pending_proposals_by_version() -> None:
    state: PolicyDocumentAggregate | None = None
    for version, operator in ((3, "cat"), (4, "ann")):
        document = msgspec.structs.replace(DEFAULT, version=version)
        command = codec.decode_command(
            json.dumps({"type": "ProposePolicy", "version": 1, "policy_version": version,
                        "document": json.loads(msgspec.json.encode(document)),
                        "proposer_id": operator}).encode()
        )  # fmt: skip
        for event in decide_policy(state, command, now_ms=NOW_MS + version):  # type: ignore[arg-type]
            state = evolve_policy(state, event)
    view = policy_view(DEFAULT, state)
    assert view.policy_version == DEFAULT.version and view.document == DEFAULT
    assert [(p.policy_version, p.proposed_by, p.proposed_at_ms) for p in view.pending] == [
        (3, "cat", NOW_MS + 3), (4, "ann", NOW_MS + 4),
    ]  # fmt: skip
    assert policy_view(DEFAULT, None).pending == ()


def test_policy_view_decodes_back_into_a_document_a_client_can_compute_with() -> None:
    wire = codec.encode(policy_view(DEFAULT, None))
    assert json.loads(wire)["type"] == "PolicyView"
    decoded = msgspec.json.decode(wire, type=PolicyView)
    assert decoded.document == DEFAULT
    assert decoded.document.fees.allowed_msat(50_000) == DEFAULT.fees.allowed_msat(50_000)


def test_corridors_view_is_sorted_by_name_with_ranked_candidates() -> None:
    table = CorridorTable(
        corridors={
            "us-eu": (RouteCandidate(region="us", node="us-lnd"),
                      RouteCandidate(region="us", node="us-cln", keysend=False)),
            "eu-asia": (RouteCandidate(region="eu", node="eu-lnd"),),
        }
    )  # fmt: skip
    view = corridors_view(table)
    assert json.loads(codec.encode(view)) == {
        "type": "CorridorsView", "ok": True, "version": 1,
        "corridors": [
            {"corridor": "eu-asia",
             "candidates": [{"rank": 1, "region": "eu", "node": "eu-lnd", "keysend": True}]},
            {"corridor": "us-eu",
             "candidates": [{"rank": 1, "region": "us", "node": "us-lnd", "keysend": True},
                            {"rank": 2, "region": "us", "node": "us-cln", "keysend": False}]},
        ],
    }  # fmt: skip
    assert msgspec.json.decode(codec.encode(view), type=CorridorsView) == view


def test_the_two_queries_decode_but_are_not_commands() -> None:
    for cls in (GetPolicy, ListCorridors):
        raw = json.dumps({"type": cls.__name__, "version": 1}).encode()
        assert isinstance(codec.decode_request(raw), cls)
        try:
            codec.decode_command(raw)
        except errors.UnknownType as exc:
            assert exc.field == "type"
        else:
            raise AssertionError(f"{cls.__name__} decoded as a command")


fee_caps = st.builds(
    lambda cap, floor_part, ppm: FeeCaps(
        cap_msat=cap, floor_msat=min(floor_part, cap), cap_ppm=ppm
    ),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.integers(0, PPM),
)


@given(fees=fee_caps, amount_msat=st.integers(1, AMOUNT_MAX_MSAT))
def test_allowed_msat_is_exactly_the_largest_fee_budget_the_fee_rule_lets_through(
    fees: FeeCaps, amount_msat: int
) -> None:
    """``FeeCaps.allowed_msat`` is what a client computes from ``policy.show``: the fee cap
    rule passes that budget and refuses one msat more."""
    document = msgspec.structs.replace(DEFAULT, fees=fees)
    allowed_msat = fees.allowed_msat(amount_msat)

    def fee_rule(max_fee_msat: int) -> rules.Finding:
        command = SubmitPaymentIntent(
            idempotency_key="k", caller=Caller(id="a", kind="service"), corridor="us-eu",
            amount_msat=amount_msat, max_fee_msat=max_fee_msat, destination="02" + "11" * 32,
        )  # fmt: skip
        return rules.fee_cap(document, rules.Subject(command, command.destination, NOW_MS))

    assert fee_rule(allowed_msat).reject_reason is None
    assert fee_rule(allowed_msat + 1).reject_reason == "fee_cap_exceeded"
    assert fee_rule(allowed_msat + 1).fired.inputs["allowed_msat"] == allowed_msat


def test_allowed_msat_for_the_default_document() -> None:
    # 1 % of the amount, at least 10 sat, at most 10,000 sat (services/policy/default.yaml).
    fees = DEFAULT.fees
    assert fees.allowed_msat(50_000) == 10_000
    assert fees.allowed_msat(2_000_000) == 20_000
    assert fees.allowed_msat(10**12) == 10_000_000
    engine = PolicyEngine(DEFAULT)
    command = SubmitPaymentIntent(
        idempotency_key="k", caller=Caller(id="a", kind="service"), corridor="us-eu",
        amount_msat=2_000_000, max_fee_msat=fees.allowed_msat(2_000_000),
        destination="02" + "11" * 32,
    )  # fmt: skip
    assert engine.judge(command, now_ms=NOW_MS).reject_reason is None
