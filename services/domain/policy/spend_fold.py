"""Rebuild the spend ledger by folding payment intent events, in log order.

- ``IntentReceived`` remembers who pays how much to whom (nothing is reserved yet);
- ``IntentPolicyChecked`` reserves, unless the tier is ``approval``: an intent waiting for an
  operator holds no budget, so a pile of pending approvals cannot block a caller;
- ``IntentDispatched`` reserves if nothing is reserved yet (the approved path);
- ``IntentRejected``, ``IntentFailed``, ``IntentCancelled`` and ``IntentExpired`` release;
- ``IntentSettled`` settles the actual total (amount plus fee).

A payment that succeeded without proof (``PaymentSucceeded`` but no ``IntentSettled``) keeps its
reservation: the money may have moved.

The budget of an intent is ``amount_msat + max_fee_msat``, the most it can cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from schemas import events as ev
from services.domain.policy.spend import SpendLedger

_RELEASING = (ev.IntentRejected, ev.IntentFailed, ev.IntentCancelled, ev.IntentExpired)


@dataclass(frozen=True, slots=True)
class IntentSpend:
    caller_id: str
    budget_msat: int
    destination: str | None


@dataclass(frozen=True, slots=True)
class SpendBook:
    """The ledger plus the facts of intents that are not final yet."""

    ledger: SpendLedger = field(default_factory=SpendLedger)
    intents: Mapping[str, IntentSpend] = field(default_factory=dict)


def apply_intent_event(
    book: SpendBook, intent_id: str, event: ev.EventData, *, at_ms: int
) -> SpendBook:
    """Fold one event of intent ``intent_id``, recorded at ``at_ms``."""
    match event:
        case ev.IntentReceived():
            destination = event.destination or (event.invoice.payee if event.invoice else None)
            facts = IntentSpend(
                caller_id=event.caller.id,
                budget_msat=event.amount_msat + event.max_fee_msat,
                destination=destination,
            )
            return replace(book, intents={**book.intents, intent_id: facts})
        case ev.IntentPolicyChecked(tier=tier) if tier != "approval":
            return replace(book, ledger=_reserve(book, intent_id, at_ms))
        case ev.IntentDispatched():
            return replace(book, ledger=_reserve(book, intent_id, at_ms))
        case ev.IntentSettled(total_msat=total_msat):
            ledger = book.ledger.settle(intent_id, amount_msat=total_msat, at_ms=at_ms)
            return SpendBook(ledger=ledger, intents=_forget(book, intent_id))
        case _ if isinstance(event, _RELEASING):
            return SpendBook(
                ledger=book.ledger.release(intent_id), intents=_forget(book, intent_id)
            )
    return book


def fold_intent_events(
    book: SpendBook, intent_id: str, events: Iterable[ev.EventData], *, at_ms: int
) -> SpendBook:
    """Fold the events one decision produced; they share one timestamp."""
    for event in events:
        book = apply_intent_event(book, intent_id, event, at_ms=at_ms)
    return book


def _reserve(book: SpendBook, intent_id: str, at_ms: int) -> SpendLedger:
    facts = book.intents.get(intent_id)
    assert facts is not None, f"{intent_id}: reservation before IntentReceived"
    return book.ledger.reserve(
        intent_id, caller_id=facts.caller_id, amount_msat=facts.budget_msat, at_ms=at_ms,
        destination=facts.destination,
    )  # fmt: skip


def _forget(book: SpendBook, intent_id: str) -> dict[str, IntentSpend]:
    return {k: v for k, v in book.intents.items() if k != intent_id}
