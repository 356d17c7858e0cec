"""Payees (issue 19, ADR 0270): a pure aggregate in the style of ``services/domain/channel_ops``.
No personal data here: a payee is an id, a region, a wallet and a liquidity choice."""

from services.domain.payees.aggregate import (
    Payee,
    PayeeContext,
    PayeeStatus,
    Refusal,
    TransitionRefused,
    decide,
    evolve,
    first_payment,
    replay,
)

__all__ = [
    "Payee",
    "PayeeContext",
    "PayeeStatus",
    "Refusal",
    "TransitionRefused",
    "decide",
    "evolve",
    "first_payment",
    "replay",
]
