"""Waiting for intents to come to rest, and for routing to see a fault: conditions with deadlines.

``RestTracker`` listens to the engine's committed batches (ADR 0095), so a wait ends the
moment the deciding batch is committed; nothing polls the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping

from services.domain.intent.state import PaymentIntent

# How often a condition that has no hook (the engine's health board) is looked at.
CONDITION_POLL_S = 0.02


class RestTracker:
    """Intents that reached a final state, as the engine commits them."""

    def __init__(self) -> None:
        self._final: set[str] = set()
        self._changed = asyncio.Event()

    def observe(self, states: Mapping[str, PaymentIntent | None]) -> None:
        """The states of a committed batch: runs on the writer loop, after each commit."""
        for intent_id, state in states.items():
            if state is not None and state.is_terminal:
                self._final.add(intent_id)
        self._changed.set()

    def pending(self, intent_ids: Collection[str]) -> list[str]:
        return [i for i in intent_ids if i not in self._final]

    async def wait_final(self, intent_ids: Collection[str], *, timeout_s: float) -> bool:
        """True once every intent is final; False if ``timeout_s`` passed first."""
        deadline_s = time.monotonic() + timeout_s
        while self.pending(intent_ids):
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                return False
            self._changed.clear()
            if not self.pending(intent_ids):
                break
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=remaining_s)
            except TimeoutError:
                return not self.pending(intent_ids)
        return True


async def wait_until(condition: Callable[[], bool], *, timeout_s: float) -> bool:
    """True once ``condition()`` holds; False if ``timeout_s`` passed first."""
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline_s:
            return False
        await asyncio.sleep(CONDITION_POLL_S)
    return True
