"""``SpendLedger``: what each caller has reserved and settled, as an immutable value.

Every operation returns a new ledger, so a decision can be judged against one snapshot and the
next decision against the ledger that includes the first one's reservation. The engine's single
writer loop judges commands one at a time, so two intents racing for the last budget are judged
in order and the second sees the first's reservation.

Counting rules (conservative: money that may still move always counts):

- an open reservation counts in every window, however old, until it is released or settled;
- a settlement counts at its ``settled_at_ms`` while it lies inside the window, i.e. while
  ``settled_at_ms > now_ms - window_ms``;
- a released reservation counts nowhere.

Reservations are the worst case (amount plus fee budget); settlements are the actual total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple


class WindowLimit(NamedTuple):
    window_ms: int
    limit_msat: int


class WindowUse(NamedTuple):
    """How much of one window a caller has used, before the amount being judged."""

    window_ms: int
    limit_msat: int
    used_msat: int

    def fits(self, amount_msat: int) -> bool:
        return self.used_msat + amount_msat <= self.limit_msat


@dataclass(frozen=True, slots=True)
class Reservation:
    caller_id: str
    amount_msat: int
    reserved_at_ms: int
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    intent_id: str
    amount_msat: int
    reserved_at_ms: int
    settled_at_ms: int


@dataclass(frozen=True, slots=True)
class SpendLedger:
    """Treat the mappings as read-only: every method copies what it changes."""

    reservations: Mapping[str, Reservation] = field(default_factory=dict)  # by intent id
    settlements: Mapping[str, tuple[Settlement, ...]] = field(default_factory=dict)  # by caller
    # (caller id, destination) -> when that caller last settled a payment to that destination.
    paid_at_ms: Mapping[tuple[str, str], int] = field(default_factory=dict)

    # Queries.

    def is_reserved(self, intent_id: str) -> bool:
        return intent_id in self.reservations

    def used_msat(self, caller_id: str, *, window_ms: int, now_ms: int) -> int:
        assert window_ms > 0
        open_msat = sum(
            r.amount_msat for r in self.reservations.values() if r.caller_id == caller_id
        )
        settled_msat = sum(
            s.amount_msat
            for s in self.settlements.get(caller_id, ())
            if s.settled_at_ms > now_ms - window_ms
        )
        return open_msat + settled_msat

    def window_uses(
        self, caller_id: str, limits: Sequence[WindowLimit], *, now_ms: int
    ) -> tuple[WindowUse, ...]:
        return tuple(
            WindowUse(
                window_ms=limit.window_ms,
                limit_msat=limit.limit_msat,
                used_msat=self.used_msat(caller_id, window_ms=limit.window_ms, now_ms=now_ms),
            )
            for limit in limits
        )

    def intents_in_window(self, caller_id: str, *, window_ms: int, now_ms: int) -> int:
        """Reserved or settled intents of this caller reserved inside the window (velocity)."""
        since_ms = now_ms - window_ms
        open_count = sum(
            1
            for r in self.reservations.values()
            if r.caller_id == caller_id and r.reserved_at_ms > since_ms
        )
        settled_count = sum(
            1 for s in self.settlements.get(caller_id, ()) if s.reserved_at_ms > since_ms
        )
        return open_count + settled_count

    def last_paid_at_ms(self, caller_id: str, destination: str) -> int | None:
        return self.paid_at_ms.get((caller_id, destination))

    # Changes.

    def reserve(
        self,
        intent_id: str,
        *,
        caller_id: str,
        amount_msat: int,
        at_ms: int,
        destination: str | None = None,
    ) -> SpendLedger:
        """Record a reservation unconditionally (folding the log records facts, it never
        refuses). Reserving an intent that is already reserved changes nothing."""
        assert amount_msat >= 0
        if intent_id in self.reservations:
            return self
        reservation = Reservation(
            caller_id=caller_id, amount_msat=amount_msat, reserved_at_ms=at_ms,
            destination=destination,
        )  # fmt: skip
        return replace(self, reservations={**self.reservations, intent_id: reservation})

    def try_reserve(
        self,
        intent_id: str,
        *,
        caller_id: str,
        amount_msat: int,
        at_ms: int,
        limits: Sequence[WindowLimit],
        destination: str | None = None,
    ) -> SpendLedger | None:
        """Reserve only if every window still fits the amount; ``None`` otherwise."""
        uses = self.window_uses(caller_id, limits, now_ms=at_ms)
        if not all(use.fits(amount_msat) for use in uses):
            return None
        return self.reserve(
            intent_id, caller_id=caller_id, amount_msat=amount_msat, at_ms=at_ms,
            destination=destination,
        )  # fmt: skip

    def release(self, intent_id: str) -> SpendLedger:
        """Give the budget back. Releasing an intent that holds no reservation changes nothing."""
        if intent_id not in self.reservations:
            return self
        reservations = dict(self.reservations)
        del reservations[intent_id]
        return replace(self, reservations=reservations)

    def settle(self, intent_id: str, *, amount_msat: int, at_ms: int) -> SpendLedger:
        """Turn the reservation into a settlement of the actual total (normally at most the
        reserved amount). The intent must hold a reservation."""
        assert amount_msat >= 0
        reservation = self.reservations.get(intent_id)
        assert reservation is not None, f"settling {intent_id} which holds no reservation"
        reservations = dict(self.reservations)
        del reservations[intent_id]
        caller_id = reservation.caller_id
        settlement = Settlement(
            intent_id=intent_id, amount_msat=amount_msat,
            reserved_at_ms=reservation.reserved_at_ms, settled_at_ms=at_ms,
        )  # fmt: skip
        settlements = {**self.settlements}
        settlements[caller_id] = (*settlements.get(caller_id, ()), settlement)
        paid_at_ms = self.paid_at_ms
        if reservation.destination is not None:
            paid_at_ms = {**paid_at_ms, (caller_id, reservation.destination): at_ms}
        return SpendLedger(
            reservations=reservations, settlements=settlements, paid_at_ms=paid_at_ms
        )

    def pruned(self, *, now_ms: int, horizon_ms: int) -> SpendLedger:
        """Forget settlements and paid destinations older than ``horizon_ms``: no window of the
        document can see them any more (``PolicyDocument.horizon_ms``). Keeps memory bounded."""
        since_ms = now_ms - horizon_ms
        settlements = {
            caller_id: kept
            for caller_id, entries in self.settlements.items()
            if (kept := tuple(s for s in entries if s.settled_at_ms > since_ms))
        }
        paid_at_ms = {key: at_ms for key, at_ms in self.paid_at_ms.items() if at_ms > since_ms}
        return replace(self, settlements=settlements, paid_at_ms=paid_at_ms)
