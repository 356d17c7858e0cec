"""The policy's payee rules (ADR 0272): the payee's region and corridors, jurisdiction, limits,
and first-payment review, off by default and switchable per policy document."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from schemas.policy_document import DenyList, PayeeRules, PolicyDocument
from services.domain.policy import AllowAllPolicy, PolicyEngine, SpendLedger
from services.domain.policy.payee_rules import PayeeFacts, PayeePolicy
from services.engine.ids import payee_id_for
from tests.unit.test_policy_engine import DOC, NOW_MS, SAT, rules_fired, submit

PAYEE_ID = payee_id_for("operator-1", "contractor")
FIRST = PayeeFacts(payee_id=PAYEE_ID, region="asia", jurisdiction="SG", first_payment=True)
LATER = PayeeFacts(payee_id=PAYEE_ID, region="asia", jurisdiction="SG", first_payment=False)


def judged(facts: PayeeFacts = FIRST, doc: PolicyDocument | None = DOC, **submit_args: Any) -> Any:
    inner = PolicyEngine(doc, SpendLedger()) if doc is not None else AllowAllPolicy()
    args = {"corridor": "us-asia", "amount_msat": 50 * SAT} | submit_args
    return PayeePolicy(inner, facts, doc).judge(submit(**args), now_ms=NOW_MS)


def payees(**rules: Any) -> PolicyDocument:
    return msgspec.structs.replace(DOC, payees=PayeeRules(**rules))


def test_first_payment_review_is_off_by_default() -> None:
    verdict = judged()
    assert (verdict.tier, verdict.reject_reason) == ("auto", None)
    assert rules_fired(verdict)[-4:] == [
        ("payee.corridor", "pass"), ("payee.jurisdiction", "pass"), ("payee.limit", "pass"),
        ("payee.first_payment", "pass"),
    ]  # fmt: skip


def test_switched_on_the_first_payment_goes_to_review_and_later_ones_do_not() -> None:
    doc = payees(first_payment_review=True)
    assert judged(FIRST, doc).tier == "review"
    assert judged(LATER, doc).tier == "auto"
    # It never makes a stricter tier looser: an approval stays one.
    assert judged(FIRST, doc, amount_msat=10_000 * SAT + 1).tier == "approval"


def test_a_payee_is_paid_in_their_own_region_through_the_corridors_allowed() -> None:
    assert judged(corridor="us-eu").reject_reason == "payee_corridor_not_allowed"
    doc = payees(corridors_allowed=("eu-asia",))
    assert judged(doc=doc).reject_reason == "payee_corridor_not_allowed"
    assert judged(doc=doc, corridor="eu-asia").reject_reason is None
    # Under the allow-all policy (version 0) the payee's region still holds.
    assert judged(doc=None, corridor="us-eu").reject_reason == "payee_corridor_not_allowed"
    assert judged(doc=None).tier == "auto"


@pytest.mark.parametrize(
    ("jurisdiction", "doc", "reason"),
    [
        ("SG", msgspec.structs.replace(DOC, deny=DenyList(jurisdictions=("SG",))),
         "jurisdiction_denied"),
        ("SG", payees(jurisdictions_allowed=("JP",)), "payee_jurisdiction_not_allowed"),
        (None, payees(jurisdictions_allowed=("JP",)), "payee_jurisdiction_not_allowed"),
        ("JP", payees(jurisdictions_allowed=("JP",)), None),
    ],
)  # fmt: skip
def test_the_payees_jurisdiction(
    jurisdiction: str | None, doc: PolicyDocument, reason: str
) -> None:
    facts = PayeeFacts(payee_id=PAYEE_ID, region="asia", jurisdiction=jurisdiction,
                       first_payment=False)  # fmt: skip
    verdict = judged(facts, doc)
    assert verdict.reject_reason == reason
    if reason:
        assert verdict.tier == "approval"  # a refusal is never read as permission


def test_per_payee_limits_override_the_payee_default() -> None:
    doc = payees(payment_max_msat=100 * SAT)
    assert judged(doc=doc, amount_msat=100 * SAT).reject_reason is None
    assert judged(doc=doc, amount_msat=100 * SAT + 1).reject_reason == "payee_limit_exceeded"
    doc = payees(payment_max_msat=100 * SAT, payment_max_msat_by_payee={PAYEE_ID: 500 * SAT})
    assert judged(doc=doc, amount_msat=500 * SAT).reject_reason is None
    other = PayeeFacts(payee_id=payee_id_for("operator-1", "other"), region="asia",
                       jurisdiction=None, first_payment=False)  # fmt: skip
    assert judged(other, doc, amount_msat=500 * SAT).reject_reason == "payee_limit_exceeded"


def test_a_refusal_of_the_rest_of_the_document_stands() -> None:
    verdict = judged(max_fee_msat=10_000_000 * SAT)
    assert verdict.reject_reason == "fee_cap_exceeded"
    assert not any(rule.startswith("payee.") for rule, _ in rules_fired(verdict))


def test_the_default_document_has_the_payee_rules_off() -> None:
    assert DOC.payees == PayeeRules() and not DOC.payees.first_payment_review
