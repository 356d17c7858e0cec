"""What the policy rules read from spend: the common interface of ``SpendLedger`` (the
immutable reference model) and ``SpendTracker`` (the engine's incremental one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.domain.policy.spend import WindowLimit, WindowUse


class SpendView(Protocol):
    def window_uses(
        self, caller_id: str, limits: Sequence[WindowLimit], *, now_ms: int
    ) -> tuple[WindowUse, ...]: ...

    def intents_in_window(self, caller_id: str, *, window_ms: int, now_ms: int) -> int: ...

    def last_paid_at_ms(self, caller_id: str, destination: str) -> int | None: ...
