"""A payee's state, its transition table, ``decide`` and ``evolve``. Pure: the payee id, the
request fingerprint and the operator arrive in the context.

Onboarding is idempotent like a payment: the same key with the same request answers from the
state (no event), with another request it is refused. Erasing is idempotent too: erasing an
erased payee changes nothing, so an erasure interrupted between the event and the deletion
of the personal data can simply be run again (ADR 0270).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import msgspec

from schemas import payee_messages as pm
from schemas.common import Caller
from schemas.events import EventData


class PayeeStatus(enum.StrEnum):
    ACTIVE = "active"  # onboarded; may be paid (within policy)
    ERASED = "erased"  # personal data erased; never paid again (terminal)


_S = PayeeStatus
# (status before, event type) -> status after. Anything else is refused by ``evolve``.
TRANSITIONS: Final[dict[tuple[PayeeStatus | None, str], PayeeStatus]] = {
    (None, "PayeeOnboarded"): _S.ACTIVE,
    (_S.ACTIVE, "PayeeFirstPayment"): _S.ACTIVE,
    (_S.ACTIVE, "PayeeErased"): _S.ERASED,
}


class Payee(msgspec.Struct, frozen=True, kw_only=True):
    payee_id: str
    status: PayeeStatus
    version: int
    caller: Caller
    request_fingerprint: str
    region: str
    wallet_pubkey: str
    wallet_node: str | None
    liquidity: pm.Liquidity
    jurisdiction: str | None = None
    # The first payment intent naming this payee that policy did not refuse (ADR 0272).
    first_payment_intent_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PayeeContext:
    payee_id: str  # derived from (operator, idempotency key) by the service layer
    request_fingerprint: str
    caller: Caller


@dataclass(frozen=True, slots=True)
class Refusal:
    """A command that changes nothing: ``code`` and the ``field`` it is about."""

    code: str
    field: str | None = None


Decision = list[EventData] | Refusal


class TransitionRefused(AssertionError):
    """An event the transition table does not allow: decide emitted it, or the log is corrupt."""


def decide(state: Payee | None, command: pm.PayeeCommand, ctx: PayeeContext) -> Decision:
    if isinstance(command, pm.ErasePayee):
        if state is None or state.payee_id != command.payee_id:
            return Refusal("unknown_payee", "payee_id")
        if state.status is PayeeStatus.ERASED:
            return []  # erased already: answered from the state
        return [pm.PayeeErased(payee_id=state.payee_id, caller=ctx.caller)]
    if state is not None:
        if state.request_fingerprint != ctx.request_fingerprint:
            return Refusal("idempotency_key_reused", "idempotency_key")
        return []  # the same request again
    return [
        pm.PayeeOnboarded(
            payee_id=ctx.payee_id, caller=ctx.caller, request_fingerprint=ctx.request_fingerprint,
            region=command.region, wallet_pubkey=command.wallet_pubkey,
            wallet_node=command.wallet_node, liquidity=command.liquidity,
            jurisdiction=command.jurisdiction,
        )
    ]  # fmt: skip


def evolve(state: Payee | None, event: EventData) -> Payee:
    target = TRANSITIONS.get((state.status if state else None, type(event).__name__))
    if target is None:
        raise TransitionRefused(
            f"{type(event).__name__} not allowed in state {state.status if state else 'none'}"
        )
    match event:
        case pm.PayeeOnboarded():
            assert state is None
            return Payee(
                payee_id=event.payee_id, status=target, version=1, caller=event.caller,
                request_fingerprint=event.request_fingerprint, region=event.region,
                wallet_pubkey=event.wallet_pubkey, wallet_node=event.wallet_node,
                liquidity=event.liquidity, jurisdiction=event.jurisdiction,
            )  # fmt: skip
        case pm.PayeeFirstPayment():
            assert state is not None and event.payee_id == state.payee_id
            assert state.first_payment_intent_id is None, "one first payment"
            return msgspec.structs.replace(
                state, version=state.version + 1, first_payment_intent_id=event.intent_id
            )
        case pm.PayeeErased():
            assert state is not None and event.payee_id == state.payee_id
            return msgspec.structs.replace(state, status=target, version=state.version + 1)
    raise TransitionRefused(f"not a payee event: {type(event).__name__}")


def first_payment(state: Payee, intent_id: str) -> list[EventData]:
    """The marker for an accepted payment intent naming this payee: only for the first."""
    if state.first_payment_intent_id is not None or state.status is not PayeeStatus.ACTIVE:
        return []
    return [pm.PayeeFirstPayment(payee_id=state.payee_id, intent_id=intent_id)]


def replay(events: Iterable[EventData]) -> Payee | None:
    state: Payee | None = None
    for event in events:
        state = evolve(state, event)
    return state
