"""The policy document: a versioned, strictly validated description of what may be paid.

Every limit the evaluator applies comes from here; the code holds none. Unknown fields are
refused so that a typo (``auto_max_sat``) fails loudly instead of silently meaning "no limit".
Cross-field checks run in ``__post_init__``; msgspec reports them with the path of the struct.
Lists are tuples (not sets) so that a document encodes byte-for-byte the same every time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Final, Literal

import msgspec

from schemas import limits
from schemas.common import (
    AmountMsat,
    CallerId,
    CallerKind,
    Corridor,
    MetadataKey,
    NodePubkey,
    PositiveAmountMsat,
    Reason,
    Region,
)

# The spend ledger keeps settled entries for the longest window, so windows are bounded.
WINDOW_S_MAX: Final = 31 * 24 * 3600
# An approval that waits longer than a week is forgotten, not pending.
APPROVAL_WINDOW_S_MAX: Final = limits.DEADLINE_S_MAX
SPEND_WINDOWS_MAX: Final = 8
LEVELS_MAX: Final = 32
CORRIDORS_MAX: Final = 256
# Per-caller overrides and deny lists are loaded into memory and carried in PolicyProposed.
CALLER_OVERRIDES_MAX: Final = 10_000
DENY_ENTRIES_MAX: Final = 100_000
PPM: Final = 1_000_000

PolicyVersion = Annotated[int, msgspec.Meta(ge=1)]
WindowS = Annotated[int, msgspec.Meta(gt=0, le=WINDOW_S_MAX)]
Ppm = Annotated[int, msgspec.Meta(ge=0, le=PPM)]
LevelName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
# ISO 3166-1 alpha-2, upper case.
Jurisdiction = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]


class _Part(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


def _require_unique(values: Iterable[object], what: str) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


class TierBands(_Part, frozen=True, kw_only=True):
    """``amount_msat`` up to ``auto_max_msat`` runs at once, up to ``review_max_msat`` after the
    review checks, anything above waits for an operator. Both bounds are inclusive."""

    auto_max_msat: AmountMsat
    review_max_msat: AmountMsat

    def __post_init__(self) -> None:
        if self.review_max_msat < self.auto_max_msat:
            raise ValueError(
                f"review_max_msat ({self.review_max_msat}) must be at least "
                f"auto_max_msat ({self.auto_max_msat})"
            )


class CorridorRule(_Part, frozen=True, kw_only=True):
    """A corridor is allowed when it has a rule. ``bands`` can only make the tier stricter."""

    amount_msat_min: PositiveAmountMsat
    amount_msat_max: PositiveAmountMsat
    bands: TierBands | None = None

    def __post_init__(self) -> None:
        if self.amount_msat_max < self.amount_msat_min:
            raise ValueError(
                f"amount_msat_max ({self.amount_msat_max}) must be at least "
                f"amount_msat_min ({self.amount_msat_min})"
            )


class KindLevels(_Part, frozen=True, kw_only=True):
    human: LevelName
    agent: LevelName
    service: LevelName

    def for_kind(self, kind: CallerKind) -> str:
        return {"human": self.human, "agent": self.agent, "service": self.service}[kind]


CallerLevels = Annotated[dict[CallerId, LevelName], msgspec.Meta(max_length=CALLER_OVERRIDES_MAX)]


class Autonomy(_Part, frozen=True, kw_only=True):
    """Named autonomy levels, the level of each caller kind, and per-caller-id overrides."""

    levels: Annotated[dict[LevelName, TierBands], msgspec.Meta(min_length=1, max_length=LEVELS_MAX)]
    kinds: KindLevels
    callers: CallerLevels = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        named = [("kinds.human", self.kinds.human), ("kinds.agent", self.kinds.agent),
                 ("kinds.service", self.kinds.service)]  # fmt: skip
        named += [(f"callers.{caller}", level) for caller, level in self.callers.items()]
        for where, level in named:
            if level not in self.levels:
                raise ValueError(f"{where} names unknown level {level!r}")


class SpendWindow(_Part, frozen=True, kw_only=True):
    """At most ``limit_msat`` (amount plus fee budget) per caller in any ``window_s`` seconds."""

    window_s: WindowS
    limit_msat: AmountMsat


SpendWindows = Annotated[tuple[SpendWindow, ...], msgspec.Meta(max_length=SPEND_WINDOWS_MAX)]


def _check_windows(windows: tuple[SpendWindow, ...], where: str) -> None:
    _require_unique((w.window_s for w in windows), f"{where} window_s")


class KindWindows(_Part, frozen=True, kw_only=True):
    human: SpendWindows
    agent: SpendWindows
    service: SpendWindows

    def for_kind(self, kind: CallerKind) -> tuple[SpendWindow, ...]:
        return {"human": self.human, "agent": self.agent, "service": self.service}[kind]

    def __post_init__(self) -> None:
        for kind in ("human", "agent", "service"):
            _check_windows(self.for_kind(kind), kind)


CallerWindows = Annotated[
    dict[CallerId, SpendWindows], msgspec.Meta(max_length=CALLER_OVERRIDES_MAX)
]


class SpendLimits(_Part, frozen=True, kw_only=True):
    """Rolling-window limits. A caller id entry replaces its kind's windows entirely."""

    on_exceed: Literal["reject", "approval"]
    kinds: KindWindows
    callers: CallerWindows = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for caller, windows in self.callers.items():
            _check_windows(windows, f"callers.{caller}")


class FeeCaps(_Part, frozen=True, kw_only=True):
    """``max_fee_msat`` may be at most min(cap_msat, max(floor_msat, amount * cap_ppm / 1e6))."""

    cap_msat: AmountMsat
    cap_ppm: Ppm
    floor_msat: AmountMsat

    def __post_init__(self) -> None:
        if self.floor_msat > self.cap_msat:
            raise ValueError(
                f"floor_msat ({self.floor_msat}) must not exceed cap_msat ({self.cap_msat})"
            )

    def allowed_msat(self, amount_msat: int) -> int:
        proportional_msat = amount_msat * self.cap_ppm // PPM
        return min(self.cap_msat, max(self.floor_msat, proportional_msat))


class Review(_Part, frozen=True, kw_only=True):
    """The automated checks of tier ``review``; failing one escalates to ``approval``."""

    require_known_destination: bool
    known_destination_lookback_s: WindowS
    velocity_window_s: WindowS
    velocity_intents_max: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class DenyList(_Part, frozen=True, kw_only=True):
    destinations: Annotated[tuple[NodePubkey, ...], msgspec.Meta(max_length=DENY_ENTRIES_MAX)] = ()
    jurisdictions: Annotated[tuple[Jurisdiction, ...], msgspec.Meta(max_length=250)] = ()

    def __post_init__(self) -> None:
        _require_unique(self.destinations, "destination")
        _require_unique(self.jurisdictions, "jurisdiction")


class Screening(_Part, frozen=True, kw_only=True):
    """Where a destination's jurisdiction comes from: the intent's metadata (the caller's word)
    or this document's map of node pubkeys (the operator's word). Both are checked."""

    jurisdiction_metadata_key: MetadataKey
    node_jurisdictions: Annotated[
        dict[NodePubkey, Jurisdiction], msgspec.Meta(max_length=DENY_ENTRIES_MAX)
    ] = msgspec.field(default_factory=dict)


# Per-payee limits are loaded into memory and carried in PolicyProposed, like caller overrides.
PAYEE_LIMITS_MAX: Final = CALLER_OVERRIDES_MAX
PayeeIdKey = Annotated[str, msgspec.Meta(pattern=r"^payee-[0-9a-f-]{36}$")]


class PayeeRules(_Part, frozen=True, kw_only=True):
    """Payments naming an onboarded payee (``payee_id``, ADR 0272). A payee is paid in their
    own region (the corridor's second region), and only to their own wallet; besides that:"""

    # Corridors a payee may be paid through; empty: every corridor this document allows.
    corridors_allowed: Annotated[tuple[Corridor, ...], msgspec.Meta(max_length=CORRIDORS_MAX)] = ()
    # Jurisdictions (the payee's recorded one) that may be paid; empty: any not denied.
    jurisdictions_allowed: Annotated[tuple[Jurisdiction, ...], msgspec.Meta(max_length=250)] = ()
    # The most one payment to a payee may be; None: the corridor's and the document's limits.
    payment_max_msat: PositiveAmountMsat | None = None
    # Per payee id, instead of ``payment_max_msat``.
    payment_max_msat_by_payee: Annotated[
        dict[PayeeIdKey, PositiveAmountMsat], msgspec.Meta(max_length=PAYEE_LIMITS_MAX)
    ] = msgspec.field(default_factory=dict)
    # The first payment to a payee gets tier ``review`` at least. Off by default.
    first_payment_review: bool = False

    def __post_init__(self) -> None:
        _require_unique(self.corridors_allowed, "corridor")
        _require_unique(self.jurisdictions_allowed, "jurisdiction")

    def payment_max_for(self, payee_id: str) -> int | None:
        return self.payment_max_msat_by_payee.get(payee_id, self.payment_max_msat)


class PolicyDocument(_Part, frozen=True, kw_only=True):
    """One version of the policy. Activated only through the two-person rule (``aggregate``)."""

    version: PolicyVersion
    description: Reason = ""
    approval_window_s: Annotated[int, msgspec.Meta(gt=0, le=APPROVAL_WINDOW_S_MAX)]
    payment_max_msat: PositiveAmountMsat
    regions_allowed: Annotated[tuple[Region, ...], msgspec.Meta(max_length=64)]
    corridors: Annotated[dict[Corridor, CorridorRule], msgspec.Meta(max_length=CORRIDORS_MAX)]
    fees: FeeCaps
    autonomy: Autonomy
    spend: SpendLimits
    review: Review
    deny: DenyList
    screening: Screening
    payees: PayeeRules = msgspec.field(default_factory=PayeeRules)  # ADR 0272

    def __post_init__(self) -> None:
        _require_unique(self.regions_allowed, "region")

    def horizon_ms(self) -> int:
        """How far back the spend ledger must remember settlements for this document."""
        windows = [w.window_s for w in self.spend.kinds.human + self.spend.kinds.agent]
        windows += [w.window_s for w in self.spend.kinds.service]
        windows += [w.window_s for ws in self.spend.callers.values() for w in ws]
        windows += [self.review.velocity_window_s, self.review.known_destination_lookback_s]
        return max(windows) * 1000
