"""Policy for payments to onboarded payees (ADR 0272): the document's ``payees`` rules on top
of the verdict the rest of the document gave. Pure.

Refusals, in order: the corridor must end in the payee's region and be one the payee rules
allow; the payee's jurisdiction must not be denied (and be allowed, when the rules list
some); the amount must be within the payee's limit. Then, with ``first_payment_review`` on,
the first payment to a payee asks for tier ``review`` at least. A verdict that already refused
stays as it was: the first refusal ends an evaluation (``engine.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.commands import SubmitPaymentIntent
from schemas.events import RuleFired
from schemas.policy_document import PayeeRules, PolicyDocument
from services.domain.policy.port import Policy, PolicyVerdict
from services.domain.policy.rules import TIER_RANK


@dataclass(frozen=True, slots=True)
class PayeeFacts:
    """What the log knows about the payee an intent names: never their name."""

    payee_id: str
    region: str
    jurisdiction: str | None
    first_payment: bool  # no earlier payment intent naming them was accepted


def _fired(rule: str, effect: str, **inputs: str | int | bool | None) -> RuleFired:
    return RuleFired(rule=rule, effect=effect, inputs=inputs)


def judge_payee(
    verdict: PolicyVerdict,
    command: SubmitPaymentIntent,
    payee: PayeeFacts,
    document: PolicyDocument | None,
) -> PolicyVerdict:
    """``document`` is ``None`` under the allow-all policy (version 0): the payee's own
    region still holds, the document's payee rules are their defaults."""
    if verdict.reject_reason is not None:
        return verdict
    payees = document.payees if document is not None else PayeeRules()
    deny = frozenset(document.deny.jurisdictions) if document is not None else frozenset()
    fired = list(verdict.explanation)
    corridor = command.corridor
    target = corridor.split("-", 1)[1]
    allowed = not payees.corridors_allowed or corridor in payees.corridors_allowed
    ok = target == payee.region and allowed
    fired.append(_fired(
        "payee.corridor", "pass" if ok else "reject", payee_id=payee.payee_id,
        corridor=corridor, payee_region=payee.region, corridor_listed=allowed,
    ))  # fmt: skip
    if not ok:
        return _refused(verdict, fired, "payee_corridor_not_allowed")
    jurisdiction = payee.jurisdiction
    listed = not payees.jurisdictions_allowed or jurisdiction in payees.jurisdictions_allowed
    ok = listed and jurisdiction not in deny
    fired.append(_fired(
        "payee.jurisdiction", "pass" if ok else "reject", payee_id=payee.payee_id,
        jurisdiction=jurisdiction, denied=jurisdiction in deny, listed=listed,
    ))  # fmt: skip
    if not ok:
        reason = "jurisdiction_denied" if jurisdiction in deny else "payee_jurisdiction_not_allowed"
        return _refused(verdict, fired, reason)
    limit_msat = payees.payment_max_for(payee.payee_id)
    ok = limit_msat is None or command.amount_msat <= limit_msat
    fired.append(_fired(
        "payee.limit", "pass" if ok else "reject", payee_id=payee.payee_id,
        amount_msat=command.amount_msat, payment_max_msat=limit_msat,
    ))  # fmt: skip
    if not ok:
        return _refused(verdict, fired, "payee_limit_exceeded")
    tier = verdict.tier
    review = payees.first_payment_review and payee.first_payment
    if review and TIER_RANK[tier] < TIER_RANK["review"]:
        tier = "review"
    fired.append(_fired(
        "payee.first_payment", "review" if review else "pass", payee_id=payee.payee_id,
        first_payment=payee.first_payment, first_payment_review=payees.first_payment_review,
    ))  # fmt: skip
    return PolicyVerdict(
        tier=tier, policy_version=verdict.policy_version, explanation=tuple(fired),
        approval_window_ms=verdict.approval_window_ms,
    )  # fmt: skip


def _refused(verdict: PolicyVerdict, fired: list[RuleFired], reason: str) -> PolicyVerdict:
    # A refusal carries tier approval, the strictest, as every refusal does (engine.py).
    return PolicyVerdict(
        tier="approval", policy_version=verdict.policy_version, explanation=tuple(fired),
        reject_reason=reason,
    )  # fmt: skip


class PayeePolicy:
    """A ``Policy`` for one intent that names a payee: the policy in force, then the payee
    rules of its document."""

    def __init__(self, inner: Policy, payee: PayeeFacts, document: PolicyDocument | None) -> None:
        self._inner = inner
        self._payee = payee
        self._document = document

    def judge(
        self, command: SubmitPaymentIntent, *, now_ms: int, payee: str | None = None
    ) -> PolicyVerdict:
        verdict = self._inner.judge(command, now_ms=now_ms, payee=payee)
        return judge_payee(verdict, command, self._payee, self._document)
