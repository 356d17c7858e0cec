"""The seeded pilot workload: who pays whom, how much, over which corridor, and in what waves.

Pure and deterministic: the same seed gives the same intents in the same order, cut into the
same waves.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

CORRIDORS = ("us-eu", "eu-asia", "us-asia")
# (caller id, kind, share of intents)
CALLERS = (
    ("acme-payroll", "service", 40),
    ("ops-alice", "human", 20),
    ("ops-bob", "human", 10),
    ("agent-ledger", "agent", 15),
    ("agent-scout", "agent", 15),
)
# (label, low sat, high sat, share): mostly small, a tail that needs an operator.
AMOUNT_BANDS = (
    ("micro", 1, 1_000, 55),
    ("small", 1_000, 10_000, 30),
    ("large", 10_000, 100_000, 12),
    ("xl", 100_000, 400_000, 3),
)
KEYSEND_SHARE_PCT = 10


@dataclass(frozen=True, slots=True)
class IntentSpec:
    index: int
    idempotency_key: str
    caller_id: str
    caller_kind: str
    corridor: str
    amount_msat: int
    max_fee_msat: int
    merchant_index: int
    keysend: bool


def max_fee_for(amount_msat: int) -> int:
    # Within the default policy's fee cap: 1 % of the amount, at least 10 sat, at most 10k sat.
    return min(10_000_000, max(10_000, amount_msat // 100))


def build_workload(seed: int, intents: int, merchants: int) -> list[IntentSpec]:
    rng = random.Random(seed)
    caller_weights = [share for *_, share in CALLERS]
    band_weights = [share for *_, share in AMOUNT_BANDS]
    out = []
    for index in range(intents):
        caller_id, kind, _ = rng.choices(CALLERS, weights=caller_weights)[0]
        _, low_sat, high_sat, _ = rng.choices(AMOUNT_BANDS, weights=band_weights)[0]
        amount_msat = rng.randint(low_sat, high_sat) * 1000 + rng.randint(0, 999)
        out.append(
            IntentSpec(
                index=index,
                idempotency_key=f"pilot-{seed}-{index:05d}",
                caller_id=caller_id,
                caller_kind=kind,
                corridor=rng.choice(CORRIDORS),
                amount_msat=amount_msat,
                max_fee_msat=max_fee_for(amount_msat),
                merchant_index=rng.randrange(merchants),
                keysend=rng.randrange(100) < KEYSEND_SHARE_PCT,
            )
        )
    return out


def waves(
    workload: Sequence[IntentSpec], *, breaks: Collection[int] = ()
) -> list[list[IntentSpec]]:
    """Consecutive runs of the workload in which no caller appears twice.

    The demo submits a wave at once and the next only when every intent of the wave has come
    to rest. Every policy input (spend windows, velocity, known destinations) belongs to one
    caller, so with one intent per caller a wave's verdicts cannot depend on the order its
    intents reach the engine. A wave also ends before every index in ``breaks``: that is where
    a fault is injected, with nothing of the workload in flight.
    """
    out: list[list[IntentSpec]] = []
    current: list[IntentSpec] = []
    callers: set[str] = set()
    for spec in workload:
        if current and (spec.caller_id in callers or spec.index in breaks):
            out.append(current)
            current, callers = [], set()
        current.append(spec)
        callers.add(spec.caller_id)
    if current:
        out.append(current)
    return out
