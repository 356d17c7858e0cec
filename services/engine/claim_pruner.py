"""Pruning idempotency claims older than the configured horizon (ADR 0079).

The claims table would otherwise grow by one row per intent forever. Pruning is safe at any
horizon: a submit repeated after its claim is gone derives the same intent id (ADR 0002), meets
the intent's stream in the log, and gets the same reply as before (or ``idempotency_mismatch``
for a different request). The horizon only bounds how long the cheap claim check answers
before the log does.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

import structlog

log = structlog.get_logger("corridor.claims")

# Hourly is plenty for a horizon of days; each call deletes a bounded batch, so one prune never
# holds many row locks or a long transaction next to the appends.
PRUNE_EVERY_S: Final = 3600.0
PRUNE_ROWS_MAX: Final = 10_000
# Batches per run: a backlog (a first run over months of claims) is worked off across runs.
PRUNE_BATCHES_MAX: Final = 100


class ClaimStore(Protocol):
    async def prune_claims(self, *, horizon_s: int, rows_max: int) -> int: ...


class ClaimPruner:
    def __init__(
        self,
        store: ClaimStore,
        *,
        horizon_s: int,
        every_s: float = PRUNE_EVERY_S,
        rows_max: int = PRUNE_ROWS_MAX,
    ) -> None:
        self._store = store
        self._horizon_s = horizon_s
        self._every_s = every_s
        self._rows_max = rows_max
        self.pruned = 0

    async def prune_once(self) -> int:
        """Prune what is older than the horizon, in batches; returns how many claims went."""
        total = 0
        for _ in range(PRUNE_BATCHES_MAX):
            removed = await self._store.prune_claims(
                horizon_s=self._horizon_s, rows_max=self._rows_max
            )
            total += removed
            if removed < self._rows_max:
                break
        self.pruned += total
        if total:
            log.info("idempotency_claims_pruned", claims=total, horizon_s=self._horizon_s)
        return total

    async def run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next run tries again
                log.warning("idempotency_prune_failed", error=type(exc).__name__)
            await asyncio.sleep(self._every_s)
