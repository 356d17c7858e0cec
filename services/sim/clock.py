"""A manual clock for deterministic simulations and tests."""

from __future__ import annotations


class ManualClock:
    """Callable clock that moves only when told to: ``clock()`` returns seconds."""

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        self._now_s = start_s

    def __call__(self) -> float:
        return self._now_s

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self._now_s += seconds
