"""The policy evaluator: each rule, the tier boundaries of the default document, explanations."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from schemas import events as ev
from schemas.commands import SubmitPaymentIntent
from schemas.common import Caller
from schemas.policy_document import DenyList, PolicyDocument, Screening, SpendLimits
from services.domain.intent import DecisionContext, decide
from services.domain.policy import Policy, PolicyEngine, SpendLedger, fold_intent_events, judge
from services.domain.policy.spend_fold import SpendBook
from services.domain.routing import CorridorTable, OrderedRouter, RouteCandidate
from services.policy.loader import load_default_policy

NOW_MS = 1_700_000_000_000
DEST = "02" + "11" * 32
OTHER = "03" + "22" * 32
SAT = 1_000  # msat
DOC = load_default_policy()


def submit(
    amount_msat: int = 50 * SAT,
    *,
    kind: str = "service",
    caller_id: str = "alice",
    corridor: str = "us-eu",
    max_fee_msat: int = 1 * SAT,
    destination: str | None = DEST,
    **extra: Any,
) -> SubmitPaymentIntent:
    payee: dict[str, Any] = (
        {"destination": destination} if destination else {"payment_request": "lnbcrt1test"}
    )
    return SubmitPaymentIntent(
        idempotency_key=f"k-{amount_msat}", caller=Caller(id=caller_id, kind=kind),  # type: ignore[arg-type]
        corridor=corridor, amount_msat=amount_msat, max_fee_msat=max_fee_msat, **payee, **extra,
    )  # fmt: skip


def paid_before(caller_id: str = "alice", destination: str = DEST) -> SpendLedger:
    """A ledger in which ``caller_id`` settled 1 sat to ``destination`` a minute ago."""
    ledger = SpendLedger().reserve(
        "old", caller_id=caller_id, amount_msat=SAT, at_ms=NOW_MS - 60_000,
        destination=destination,
    )  # fmt: skip
    return ledger.settle("old", amount_msat=SAT, at_ms=NOW_MS - 60_000)


def rules_fired(verdict: Any) -> list[tuple[str, str]]:
    return [(r.rule, r.effect) for r in verdict.explanation]


def fired(verdict: Any, rule: str) -> ev.RuleFired:
    (match,) = [r for r in verdict.explanation if r.rule == rule]
    return match


def with_doc(**changes: Any) -> PolicyDocument:
    return msgspec.structs.replace(DOC, **changes)


# Tier boundaries of the default document.


@pytest.mark.parametrize("kind", ["service", "human"])
@pytest.mark.parametrize(
    ("amount_msat", "tier"),
    [(SAT, "auto"), (10_000 * SAT, "auto"), (10_000 * SAT + 1, "approval")],
)
def test_service_and_human_run_at_once_up_to_10k_sat(
    kind: str, amount_msat: int, tier: str
) -> None:
    verdict = PolicyEngine(DOC).judge(submit(amount_msat, kind=kind, max_fee_msat=0), now_ms=NOW_MS)
    assert (verdict.tier, verdict.reject_reason) == (tier, None)
    assert fired(verdict, "autonomy.level").inputs["level"] == "trusted"


@pytest.mark.parametrize(
    ("amount_msat", "tier"),
    [
        (1_000 * SAT, "auto"),
        (1_000 * SAT + 1, "review"),
        (10_000 * SAT, "review"),
        (10_000 * SAT + 1, "approval"),
    ],
)
def test_agent_tiers_at_the_1k_and_10k_sat_edges(amount_msat: int, tier: str) -> None:
    engine = PolicyEngine(DOC, paid_before())
    verdict = engine.judge(submit(amount_msat, kind="agent", max_fee_msat=0), now_ms=NOW_MS)
    assert verdict.tier == tier
    assert fired(verdict, "autonomy.level").effect == tier
    assert verdict.reject_reason is None
    assert (verdict.approval_window_ms is not None) == (tier == "approval")


def test_review_that_passes_stays_review_and_records_its_checks() -> None:
    verdict = PolicyEngine(DOC, paid_before()).judge(
        submit(5_000 * SAT, kind="agent"), now_ms=NOW_MS
    )
    assert verdict.tier == "review"
    assert fired(verdict, "review.known_destination").effect == "pass"
    assert fired(verdict, "review.velocity").inputs == {
        "window_s": 3600, "intents": 1, "intents_max": 20,
    }  # fmt: skip


def test_review_escalates_a_destination_never_paid() -> None:
    verdict = PolicyEngine(DOC, paid_before(destination=OTHER)).judge(
        submit(5_000 * SAT, kind="agent"), now_ms=NOW_MS
    )
    assert verdict.tier == "approval"
    assert fired(verdict, "review.known_destination").effect == "escalate"
    assert verdict.approval_window_ms == DOC.approval_window_s * 1000


def test_review_escalates_a_destination_paid_before_the_lookback() -> None:
    lookback_ms = DOC.review.known_destination_lookback_s * 1000
    verdict = PolicyEngine(DOC, paid_before()).judge(
        submit(5_000 * SAT, kind="agent"), now_ms=NOW_MS - 60_000 + lookback_ms
    )
    assert fired(verdict, "review.known_destination").effect == "escalate"
    assert verdict.tier == "approval"


def test_review_escalates_too_many_intents_in_the_velocity_window() -> None:
    ledger = paid_before()
    for n in range(DOC.review.velocity_intents_max - 1):  # the settled one counts too
        ledger = ledger.reserve(f"i{n}", caller_id="alice", amount_msat=1, at_ms=NOW_MS - n)
    verdict = PolicyEngine(DOC, ledger).judge(submit(5_000 * SAT, kind="agent"), now_ms=NOW_MS)
    assert fired(verdict, "review.velocity").effect == "escalate"
    assert verdict.tier == "approval"


def test_review_can_skip_the_known_destination_check() -> None:
    doc = with_doc(review=msgspec.structs.replace(DOC.review, require_known_destination=False))
    verdict = PolicyEngine(doc).judge(submit(5_000 * SAT, kind="agent"), now_ms=NOW_MS)
    assert verdict.tier == "review"
    assert "review.known_destination" not in [r.rule for r in verdict.explanation]


def test_caller_id_level_overrides_the_kind() -> None:
    autonomy = msgspec.structs.replace(DOC.autonomy, callers={"bot-7": "trusted"})
    verdict = PolicyEngine(with_doc(autonomy=autonomy)).judge(
        submit(10_000 * SAT, kind="agent", caller_id="bot-7", max_fee_msat=0), now_ms=NOW_MS
    )
    assert verdict.tier == "auto"
    assert fired(verdict, "autonomy.level").inputs["source"] == "caller"


def test_corridor_bands_can_only_make_the_tier_stricter() -> None:
    from schemas.policy_document import CorridorRule, TierBands

    strict = CorridorRule(
        amount_msat_min=1, amount_msat_max=10**9,
        bands=TierBands(auto_max_msat=100 * SAT, review_max_msat=100 * SAT),
    )  # fmt: skip
    doc = with_doc(corridors={**DOC.corridors, "us-asia": strict})
    assert PolicyEngine(doc).judge(submit(100 * SAT, corridor="us-asia"), now_ms=NOW_MS).tier == (
        "auto"
    )
    verdict = PolicyEngine(doc).judge(submit(101 * SAT, corridor="us-asia"), now_ms=NOW_MS)
    assert verdict.tier == "approval"
    assert fired(verdict, "corridor.band").effect == "approval"
    assert fired(verdict, "autonomy.level").effect == "auto"


# Refusals.


def test_corridor_not_allowed() -> None:
    verdict = PolicyEngine(DOC).judge(submit(corridor="us-af"), now_ms=NOW_MS)
    assert verdict.reject_reason == "corridor_not_allowed"
    assert rules_fired(verdict) == [("corridor.allowed", "reject")]
    assert verdict.explanation[0].inputs == {"corridor": "us-af"}


def test_region_not_allowed_blocks_every_corridor_touching_it() -> None:
    doc = with_doc(regions_allowed=("us", "eu"))
    verdict = PolicyEngine(doc).judge(submit(corridor="eu-asia"), now_ms=NOW_MS)
    assert verdict.reject_reason == "region_not_allowed"
    assert fired(verdict, "corridor.regions").inputs["region"] == "asia"
    assert PolicyEngine(doc).judge(submit(corridor="us-eu"), now_ms=NOW_MS).reject_reason is None


@pytest.mark.parametrize(
    ("amount_msat", "reason"),
    [
        (999, "amount_below_minimum"),
        (1_000, None),
        (1_000_000_000, None),
        (1_000_000_001, "amount_above_maximum"),
    ],
)
def test_amount_bounds(amount_msat: int, reason: str | None) -> None:
    verdict = PolicyEngine(DOC).judge(submit(amount_msat, max_fee_msat=0), now_ms=NOW_MS)
    assert verdict.reject_reason == reason


def test_payment_max_applies_below_a_looser_corridor_max() -> None:
    verdict = PolicyEngine(with_doc(payment_max_msat=5 * SAT)).judge(
        submit(5 * SAT + 1, max_fee_msat=0), now_ms=NOW_MS
    )
    assert verdict.reject_reason == "amount_above_maximum"
    assert fired(verdict, "amount.bounds").inputs["payment_max_msat"] == 5 * SAT


@pytest.mark.parametrize(
    ("amount_msat", "max_fee_msat", "reason"),
    [
        (50 * SAT, 10 * SAT, None),  # the floor: 10 sat is always allowed
        (50 * SAT, 10 * SAT + 1, "fee_cap_exceeded"),
        (500_000 * SAT, 5_000 * SAT, None),  # 1 % of the amount
        (500_000 * SAT, 5_000 * SAT + 1, "fee_cap_exceeded"),
        (1_000_000 * SAT, 10_000 * SAT, None),  # the absolute cap
        (1_000_000 * SAT, 10_000 * SAT + 1, "fee_cap_exceeded"),
    ],
)
def test_fee_caps(amount_msat: int, max_fee_msat: int, reason: str | None) -> None:
    verdict = PolicyEngine(DOC).judge(submit(amount_msat, max_fee_msat=max_fee_msat), now_ms=NOW_MS)
    assert verdict.reject_reason == reason
    assert fired(verdict, "fee.cap").effect == ("reject" if reason else "pass")


def test_fee_cap_explanation_names_the_allowance() -> None:
    verdict = PolicyEngine(DOC).judge(
        submit(500_000 * SAT, max_fee_msat=6_000 * SAT), now_ms=NOW_MS
    )
    assert fired(verdict, "fee.cap").inputs == {
        "max_fee_msat": 6_000_000, "allowed_msat": 5_000_000, "cap_msat": 10_000_000,
        "cap_ppm": 10_000, "floor_msat": 10_000,
    }  # fmt: skip


def test_denied_destination() -> None:
    doc = with_doc(deny=DenyList(destinations=(DEST,)))
    verdict = PolicyEngine(doc).judge(submit(), now_ms=NOW_MS)
    assert verdict.reject_reason == "destination_denied"
    assert rules_fired(verdict)[-1] == ("deny.destination", "reject")
    assert PolicyEngine(doc).judge(submit(destination=OTHER), now_ms=NOW_MS).reject_reason is None


def test_denied_invoice_payee_when_the_payee_is_given() -> None:
    doc = with_doc(deny=DenyList(destinations=(DEST,)))
    verdict = PolicyEngine(doc).judge(submit(destination=None), now_ms=NOW_MS, payee=DEST)
    assert verdict.reject_reason == "destination_denied"


def test_unknown_payee_cannot_be_screened_so_it_needs_approval() -> None:
    doc = with_doc(deny=DenyList(destinations=(DEST,)))
    verdict = PolicyEngine(doc).judge(submit(destination=None), now_ms=NOW_MS)
    assert (verdict.tier, verdict.reject_reason) == ("approval", None)
    assert fired(verdict, "screening.payee").inputs == {"destination": None, "payee_known": False}
    assert fired(verdict, "screening.payee").effect == "approval"
    # With nothing to screen against, an invoice without a known payee is not held.
    assert PolicyEngine(DOC).judge(submit(destination=None), now_ms=NOW_MS).tier == "auto"


@pytest.mark.parametrize("claimed", ["KP", "kp"])
def test_jurisdiction_from_intent_metadata(claimed: str) -> None:
    doc = with_doc(deny=DenyList(jurisdictions=("KP",)))
    verdict = PolicyEngine(doc).judge(submit(metadata={"jurisdiction": claimed}), now_ms=NOW_MS)
    assert verdict.reject_reason == "jurisdiction_denied"
    assert fired(verdict, "deny.jurisdiction").inputs["metadata_jurisdiction"] == claimed


def test_jurisdiction_from_the_documents_node_map() -> None:
    doc = with_doc(
        deny=DenyList(jurisdictions=("KP",)),
        screening=Screening(jurisdiction_metadata_key="jurisdiction",
                            node_jurisdictions={DEST: "KP", OTHER: "DE"}),
    )  # fmt: skip
    verdict = PolicyEngine(doc).judge(submit(metadata={"jurisdiction": "DE"}), now_ms=NOW_MS)
    assert verdict.reject_reason == "jurisdiction_denied"
    assert fired(verdict, "deny.jurisdiction").inputs == {
        "metadata_jurisdiction": "DE", "node_jurisdiction": "KP", "destination": DEST,
    }  # fmt: skip
    assert PolicyEngine(doc).judge(submit(destination=OTHER), now_ms=NOW_MS).reject_reason is None


def test_the_first_refusal_ends_the_evaluation() -> None:
    verdict = PolicyEngine(DOC).judge(submit(1, max_fee_msat=10**9), now_ms=NOW_MS)
    assert verdict.reject_reason == "amount_below_minimum"
    assert verdict.tier == "approval"
    assert rules_fired(verdict) == [
        ("corridor.allowed", "pass"), ("corridor.regions", "pass"), ("amount.bounds", "reject"),
    ]  # fmt: skip


# Spend windows.


def test_spend_window_over_the_limit_needs_approval_by_default() -> None:
    hour_limit_msat = DOC.spend.kinds.agent[0].limit_msat  # 20,000 sat
    ledger = SpendLedger().reserve("a", caller_id="bot", amount_msat=hour_limit_msat - 500 * SAT,
                                   at_ms=NOW_MS)  # fmt: skip
    engine = PolicyEngine(DOC, ledger)
    ok = engine.judge(submit(499 * SAT, kind="agent", caller_id="bot"), now_ms=NOW_MS)
    assert ok.tier == "auto"  # 499 sat + 1 sat fee budget fits exactly
    over = engine.judge(submit(500 * SAT, kind="agent", caller_id="bot"), now_ms=NOW_MS)
    assert over.tier == "approval"
    window = next(r for r in over.explanation if r.rule == "spend.window")
    assert window.effect == "approval"
    assert window.inputs == {
        "caller_id": "bot", "source": "kind", "window_s": 3600, "limit_msat": 20_000_000,
        "used_msat": 19_500_000, "budget_msat": 501_000,
    }  # fmt: skip


def test_spend_window_can_reject() -> None:
    spend = msgspec.structs.replace(DOC.spend, on_exceed="reject")
    ledger = SpendLedger().reserve("a", caller_id="bot", amount_msat=20_000 * SAT, at_ms=NOW_MS)
    verdict = PolicyEngine(with_doc(spend=spend), ledger).judge(
        submit(kind="agent", caller_id="bot"), now_ms=NOW_MS
    )
    assert verdict.reject_reason == "spend_limit_exceeded"


def test_spend_limits_per_caller_id_replace_the_kinds() -> None:
    from schemas.policy_document import SpendWindow

    spend = SpendLimits(
        on_exceed="reject", kinds=DOC.spend.kinds,
        callers={"tiny": (SpendWindow(window_s=60, limit_msat=10 * SAT),)},
    )  # fmt: skip
    engine = PolicyEngine(with_doc(spend=spend))
    verdict = engine.judge(submit(10 * SAT, caller_id="tiny", max_fee_msat=1), now_ms=NOW_MS)
    assert verdict.reject_reason == "spend_limit_exceeded"
    assert fired(verdict, "spend.window").inputs["source"] == "caller"


def test_two_intents_racing_for_the_last_budget_cannot_both_pass() -> None:
    """The writer loop judges one command at a time and folds its events before the next."""
    spend = msgspec.structs.replace(DOC.spend, on_exceed="reject")
    engine = PolicyEngine(with_doc(spend=spend))
    intake = [("i1", submit(6_000 * SAT, kind="human")), ("i2", submit(6_000 * SAT, kind="human"))]
    # Use up 90,000 of the 100,000 sat the human hour window allows.
    used = submit(90_000 * SAT, kind="human", max_fee_msat=0)
    book = _received_and_checked(SpendBook(), "i0", used, "auto")
    outcomes = []
    for intent_id, command in intake:
        verdict = engine.with_spend(book.ledger).judge(command, now_ms=NOW_MS)
        outcomes.append(verdict.reject_reason)
        book = _received_and_checked(book, intent_id, command, verdict.tier, verdict.reject_reason)
    assert outcomes == [None, "spend_limit_exceeded"]


def _received_and_checked(
    book: SpendBook, intent_id: str, command: SubmitPaymentIntent, tier: str,
    reject_reason: str | None = None,
) -> SpendBook:  # fmt: skip
    events: list[ev.EventData] = [
        ev.IntentReceived(
            intent_id=intent_id, caller=command.caller, idempotency_key=intent_id,
            corridor=command.corridor, amount_msat=command.amount_msat,
            max_fee_msat=command.max_fee_msat, destination=command.destination,
            received_at_ms=NOW_MS, request_fingerprint="fp",
        ),
        ev.IntentPolicyChecked(tier=tier, policy_version=1),  # type: ignore[arg-type]
    ]  # fmt: skip
    if reject_reason:
        events.append(ev.IntentRejected(by="policy", reason=reject_reason))
    return fold_intent_events(book, intent_id, events, at_ms=NOW_MS)


# Explanation and the port.


def test_explanation_lists_every_rule_in_order_with_its_inputs() -> None:
    verdict = PolicyEngine(DOC).judge(submit(50 * SAT, kind="service"), now_ms=NOW_MS)
    assert verdict.policy_version == 1
    assert rules_fired(verdict) == [
        ("corridor.allowed", "pass"), ("corridor.regions", "pass"), ("amount.bounds", "pass"),
        ("fee.cap", "pass"), ("deny.destination", "pass"), ("deny.jurisdiction", "pass"),
        ("screening.payee", "pass"), ("spend.window", "pass"), ("spend.window", "pass"),
        ("autonomy.level", "auto"),
    ]  # fmt: skip
    assert fired(verdict, "autonomy.level").inputs == {
        "caller_id": "alice", "caller_kind": "service", "source": "kind", "level": "trusted",
        "amount_msat": 50_000, "auto_max_msat": 10_000_000, "review_max_msat": 10_000_000,
    }  # fmt: skip
    # The explanation is part of IntentPolicyChecked: it must encode as an event.
    encoded = msgspec.json.encode(
        ev.IntentPolicyChecked(tier=verdict.tier, policy_version=1, explanation=verdict.explanation)
    )
    assert b'"rule":"autonomy.level"' in encoded


def test_judge_is_pure_and_the_function_matches_the_engine() -> None:
    command, ledger = submit(5_000 * SAT, kind="agent"), paid_before()
    first = judge(DOC, command, now_ms=NOW_MS, spend=ledger)
    assert first == judge(DOC, command, now_ms=NOW_MS, spend=ledger)
    assert first == PolicyEngine(DOC, ledger).judge(command, now_ms=NOW_MS)
    assert first == PolicyEngine(DOC).with_spend(ledger).judge(command, now_ms=NOW_MS)


def test_engine_is_the_policy_the_intent_aggregate_uses() -> None:
    policy: Policy = PolicyEngine(DOC)
    router = OrderedRouter(
        CorridorTable(corridors={"us-eu": (RouteCandidate(region="us", node="us-lnd"),)})
    )
    ctx = DecisionContext(now_ms=NOW_MS, policy=policy, router=router, intent_id="i-1",
                          request_fingerprint="fp")  # fmt: skip
    events = decide(None, submit(20_000 * SAT, kind="agent"), ctx)
    assert [type(e).__name__ for e in events] == [
        "IntentReceived", "IntentPolicyChecked", "IntentApprovalRequested",
    ]  # fmt: skip
    approval = events[2]
    assert isinstance(approval, ev.IntentApprovalRequested)
    assert approval.approval_deadline_at_ms == NOW_MS + DOC.approval_window_s * 1000
    refused = decide(None, submit(corridor="us-af"), ctx)
    assert refused[-1] == ev.IntentRejected(by="policy", reason="corridor_not_allowed")
