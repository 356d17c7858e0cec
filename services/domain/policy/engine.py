"""``PolicyEngine``: judge one payment intent against a policy document and a spend snapshot.

Pure: the same document, ledger, command and ``now_ms`` always give the same verdict. The
order of evaluation is fixed and every rule that ran is in the explanation:

1. refusals: corridor allowed, corridor regions allowed, amount bounds, fee cap, denied
   destination, denied jurisdiction (the first refusal ends the evaluation);
2. screening: a payee the engine was not told about cannot be screened, so it needs approval;
3. spend windows: over a limit refuses or needs approval (``spend.on_exceed``);
4. tier: the strictest of the caller's autonomy level and the corridor's bands;
5. review: in tier ``review`` the automated checks run; any failure escalates to ``approval``;
6. approval: the verdict carries the document's approval window.

A refused intent carries tier ``approval``, the strictest, so nothing downstream reads a
refusal as allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from schemas.commands import SubmitPaymentIntent
from schemas.events import RuleFired, Tier
from schemas.policy_document import PolicyDocument
from services.domain.policy import rules
from services.domain.policy.port import PolicyVerdict
from services.domain.policy.spend import SpendLedger
from services.domain.policy.spend_view import SpendView


class PolicyEngine:
    """A ``Policy`` (the port) backed by a document and the spend ledger given here.

    Immutable. The engine's writer loop judges commands one at a time; after each decision it
    folds the new events into its ``SpendBook`` and judges the next command with the engine
    that ``with_spend`` returns (which shares the deny sets built from the document).
    """

    __slots__ = ("_deny", "document", "spend")

    def __init__(self, document: PolicyDocument, spend: SpendView | None = None) -> None:
        self.document = document
        self.spend = spend if spend is not None else SpendLedger()
        self._deny = rules.DenyIndex.of(document)

    @property
    def version(self) -> int:
        return self.document.version

    def with_spend(self, spend: SpendView) -> PolicyEngine:
        engine = object.__new__(PolicyEngine)
        engine.document, engine.spend, engine._deny = self.document, spend, self._deny
        return engine

    def judge(
        self, command: SubmitPaymentIntent, *, now_ms: int, payee: str | None = None
    ) -> PolicyVerdict:
        """``payee`` is the invoice's payee pubkey, which the deny list needs for invoices."""
        subject = rules.Subject(
            command=command, destination=command.destination or payee, now_ms=now_ms
        )
        return _judge(self.document, self._deny, self.spend, subject)


def judge(
    document: PolicyDocument,
    command: SubmitPaymentIntent,
    *,
    now_ms: int,
    spend: SpendView,
    payee: str | None = None,
) -> PolicyVerdict:
    """The evaluator as a function; ``PolicyEngine`` is the same with the deny sets cached."""
    return PolicyEngine(document, spend).judge(command, now_ms=now_ms, payee=payee)


def _judge(
    doc: PolicyDocument, deny: rules.DenyIndex, spend: SpendView, s: rules.Subject
) -> PolicyVerdict:
    fired: list[RuleFired] = []
    refusals: tuple[Callable[[], rules.Finding], ...] = (
        lambda: rules.corridor_allowed(doc, s),
        lambda: rules.regions_allowed(doc, s),
        lambda: rules.amount_bounds(doc, s),
        lambda: rules.fee_cap(doc, s),
        lambda: rules.deny_destination(deny, s),
        lambda: rules.deny_jurisdiction(doc, deny, s),
    )
    for refusal in refusals:
        finding = refusal()
        fired.append(finding.fired)
        if finding.reject_reason is not None:
            return _refused(doc, fired, finding.reject_reason)
    asks: list[rules.Finding] = [rules.payee_known(deny, s), *rules.spend_windows(doc, spend, s)]
    asks.append(rules.autonomy(doc, s))
    band = rules.corridor_band(doc, s)
    if band is not None:
        asks.append(band)
    fired += [a.fired for a in asks]
    refused = next((a.reject_reason for a in asks if a.reject_reason is not None), None)
    if refused is not None:
        return _refused(doc, fired, refused)
    tier = _strictest(a.tier for a in asks)
    if tier == "review":
        checks = [rules.review_velocity(doc, spend, s)]
        if doc.review.require_known_destination:
            checks.insert(0, rules.review_known_destination(doc, spend, s))
        fired += [c.fired for c in checks]
        tier = _strictest([tier, *(c.tier for c in checks)])
    if tier != "approval":
        return PolicyVerdict(tier=tier, policy_version=doc.version, explanation=tuple(fired))
    fired.append(
        RuleFired(
            rule="approval.window", effect="approval",
            inputs={"approval_window_s": doc.approval_window_s},
        )
    )  # fmt: skip
    return PolicyVerdict(
        tier="approval",
        policy_version=doc.version,
        explanation=tuple(fired),
        approval_window_ms=doc.approval_window_s * 1000,
    )


def _strictest(tiers: Iterable[Tier | None]) -> Tier:
    result: Tier = "auto"
    for tier in tiers:
        if tier is not None and rules.TIER_RANK[tier] > rules.TIER_RANK[result]:
            result = tier
    return result


def _refused(doc: PolicyDocument, fired: list[RuleFired], reason: str) -> PolicyVerdict:
    return PolicyVerdict(
        tier="approval", policy_version=doc.version, explanation=tuple(fired), reject_reason=reason
    )
