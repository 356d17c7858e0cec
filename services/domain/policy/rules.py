"""The rules of a policy document, one function each. Every rule reports a ``RuleFired``.

A rule either refuses (``reject_reason``), asks for a tier (the strictest asked for wins), or
passes. Rule names and reject reasons are stable strings: audits and dashboards key on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.commands import SubmitPaymentIntent
from schemas.events import RuleFired, Tier
from schemas.policy_document import PolicyDocument, SpendWindow, TierBands
from services.domain.policy.spend import WindowLimit
from services.domain.policy.spend_view import SpendView

TIER_RANK: dict[Tier, int] = {"auto": 0, "review": 1, "approval": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    fired: RuleFired
    reject_reason: str | None = None
    tier: Tier | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """The intent as the rules see it. ``destination`` is the node pubkey when known: the
    command's ``destination``, or the payee of its invoice as decoded by the intake."""

    command: SubmitPaymentIntent
    destination: str | None
    now_ms: int

    @property
    def budget_msat(self) -> int:
        return self.command.amount_msat + self.command.max_fee_msat


@dataclass(frozen=True, slots=True)
class DenyIndex:
    """The deny lists as sets, built once per document."""

    destinations: frozenset[str]
    jurisdictions: frozenset[str]

    @classmethod
    def of(cls, doc: PolicyDocument) -> DenyIndex:
        return cls(frozenset(doc.deny.destinations), frozenset(doc.deny.jurisdictions))


def _fired(rule: str, effect: str, **inputs: str | int | bool | None) -> RuleFired:
    return RuleFired(rule=rule, effect=effect, inputs=inputs)


def _reject(rule: str, reason: str, **inputs: str | int | bool | None) -> Finding:
    return Finding(fired=_fired(rule, "reject", **inputs), reject_reason=reason)


def _pass(rule: str, **inputs: str | int | bool | None) -> Finding:
    return Finding(fired=_fired(rule, "pass", **inputs))


def corridor_allowed(doc: PolicyDocument, s: Subject) -> Finding:
    corridor = s.command.corridor
    if corridor not in doc.corridors:
        return _reject("corridor.allowed", "corridor_not_allowed", corridor=corridor)
    return _pass("corridor.allowed", corridor=corridor)


def regions_allowed(doc: PolicyDocument, s: Subject) -> Finding:
    corridor = s.command.corridor
    # Corridor names are "<from>-<to>" (schemas.limits.CORRIDOR_PATTERN).
    origin, target = corridor.split("-", 1)
    for region in (origin, target):
        if region not in doc.regions_allowed:
            return _reject(
                "corridor.regions", "region_not_allowed", corridor=corridor, region=region
            )
    return _pass("corridor.regions", corridor=corridor, origin=origin, target=target)


def amount_bounds(doc: PolicyDocument, s: Subject) -> Finding:
    rule = doc.corridors[s.command.corridor]
    amount_msat = s.command.amount_msat
    inputs: dict[str, str | int | bool | None] = {
        "amount_msat": amount_msat,
        "amount_msat_min": rule.amount_msat_min,
        "amount_msat_max": rule.amount_msat_max,
        "payment_max_msat": doc.payment_max_msat,
    }
    if amount_msat < rule.amount_msat_min:
        return _reject("amount.bounds", "amount_below_minimum", **inputs)
    if amount_msat > min(rule.amount_msat_max, doc.payment_max_msat):
        return _reject("amount.bounds", "amount_above_maximum", **inputs)
    return _pass("amount.bounds", **inputs)


def fee_cap(doc: PolicyDocument, s: Subject) -> Finding:
    fees = doc.fees
    allowed_msat = fees.allowed_msat(s.command.amount_msat)
    inputs: dict[str, str | int | bool | None] = {
        "max_fee_msat": s.command.max_fee_msat,
        "allowed_msat": allowed_msat,
        "cap_msat": fees.cap_msat,
        "cap_ppm": fees.cap_ppm,
        "floor_msat": fees.floor_msat,
    }
    if s.command.max_fee_msat > allowed_msat:
        return _reject("fee.cap", "fee_cap_exceeded", **inputs)
    return _pass("fee.cap", **inputs)


def deny_destination(deny: DenyIndex, s: Subject) -> Finding:
    if s.destination is not None and s.destination in deny.destinations:
        return _reject("deny.destination", "destination_denied", destination=s.destination)
    return _pass("deny.destination", destination=s.destination)


def deny_jurisdiction(doc: PolicyDocument, deny: DenyIndex, s: Subject) -> Finding:
    claimed = s.command.metadata.get(doc.screening.jurisdiction_metadata_key)
    mapped = (
        doc.screening.node_jurisdictions.get(s.destination) if s.destination is not None else None
    )
    inputs: dict[str, str | int | bool | None] = {
        "metadata_jurisdiction": claimed,
        "node_jurisdiction": mapped,
        "destination": s.destination,
    }
    if any(j is not None and j.upper() in deny.jurisdictions for j in (claimed, mapped)):
        return _reject("deny.jurisdiction", "jurisdiction_denied", **inputs)
    return _pass("deny.jurisdiction", **inputs)


def payee_known(deny: DenyIndex, s: Subject) -> Finding:
    """Screening cannot see the payee of an invoice it was not given: fail closed."""
    if s.destination is None and (deny.destinations or deny.jurisdictions):
        fired = _fired("screening.payee", "approval", destination=None, payee_known=False)
        return Finding(fired=fired, tier="approval")
    return _pass(
        "screening.payee", destination=s.destination, payee_known=s.destination is not None
    )


def spend_windows(doc: PolicyDocument, spend: SpendView, s: Subject) -> list[Finding]:
    caller = s.command.caller
    windows: tuple[SpendWindow, ...]
    if caller.id in doc.spend.callers:
        source, windows = "caller", doc.spend.callers[caller.id]
    else:
        source, windows = "kind", doc.spend.kinds.for_kind(caller.kind)
    limits = [WindowLimit(w.window_s * 1000, w.limit_msat) for w in windows]
    findings = []
    for use in spend.window_uses(caller.id, limits, now_ms=s.now_ms):
        inputs: dict[str, str | int | bool | None] = {
            "caller_id": caller.id, "source": source, "window_s": use.window_ms // 1000,
            "limit_msat": use.limit_msat, "used_msat": use.used_msat,
            "budget_msat": s.budget_msat,
        }  # fmt: skip
        if use.fits(s.budget_msat):
            findings.append(_pass("spend.window", **inputs))
        elif doc.spend.on_exceed == "reject":
            findings.append(_reject("spend.window", "spend_limit_exceeded", **inputs))
        else:
            findings.append(Finding(fired=_fired("spend.window", "approval", **inputs),
                                    tier="approval"))  # fmt: skip
    return findings


def band_tier(bands: TierBands, amount_msat: int) -> Tier:
    if amount_msat <= bands.auto_max_msat:
        return "auto"
    if amount_msat <= bands.review_max_msat:
        return "review"
    return "approval"


def autonomy(doc: PolicyDocument, s: Subject) -> Finding:
    caller = s.command.caller
    if caller.id in doc.autonomy.callers:
        source, level = "caller", doc.autonomy.callers[caller.id]
    else:
        source, level = "kind", doc.autonomy.kinds.for_kind(caller.kind)
    bands = doc.autonomy.levels[level]
    tier = band_tier(bands, s.command.amount_msat)
    fired = _fired(
        "autonomy.level", tier, caller_id=caller.id, caller_kind=caller.kind, source=source,
        level=level, amount_msat=s.command.amount_msat, auto_max_msat=bands.auto_max_msat,
        review_max_msat=bands.review_max_msat,
    )  # fmt: skip
    return Finding(fired=fired, tier=tier)


def corridor_band(doc: PolicyDocument, s: Subject) -> Finding | None:
    bands = doc.corridors[s.command.corridor].bands
    if bands is None:
        return None
    tier = band_tier(bands, s.command.amount_msat)
    fired = _fired(
        "corridor.band", tier, corridor=s.command.corridor, amount_msat=s.command.amount_msat,
        auto_max_msat=bands.auto_max_msat, review_max_msat=bands.review_max_msat,
    )  # fmt: skip
    return Finding(fired=fired, tier=tier)


def review_known_destination(doc: PolicyDocument, spend: SpendView, s: Subject) -> Finding:
    lookback_s = doc.review.known_destination_lookback_s
    last_ms = (
        spend.last_paid_at_ms(s.command.caller.id, s.destination)
        if s.destination is not None
        else None
    )
    known = last_ms is not None and last_ms > s.now_ms - lookback_s * 1000
    fired = _fired(
        "review.known_destination", "pass" if known else "escalate",
        destination=s.destination, last_paid_at_ms=last_ms, lookback_s=lookback_s,
    )  # fmt: skip
    return Finding(fired=fired, tier=None if known else "approval")


def review_velocity(doc: PolicyDocument, spend: SpendView, s: Subject) -> Finding:
    window_s = doc.review.velocity_window_s
    intents = spend.intents_in_window(
        s.command.caller.id, window_ms=window_s * 1000, now_ms=s.now_ms
    )
    within = intents + 1 <= doc.review.velocity_intents_max
    fired = _fired(
        "review.velocity", "pass" if within else "escalate", window_s=window_s,
        intents=intents, intents_max=doc.review.velocity_intents_max,
    )  # fmt: skip
    return Finding(fired=fired, tier=None if within else "approval")
