"""The fault plan: which fault strikes at which step, drawn from the seed.

A plan is plain data that prints as text (``FaultPlan.text``) and is drawn again exactly from
the same seed, so a failing seed's report says what happened and reproduces it (ADR 0099).
``FaultyStore`` applies the store's faults to an ``InMemoryEventStore``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from services.eventstore.memory import InMemoryEventStore
from services.eventstore.port import AppendFence, IdempotencyClaim, NewEvent


class FaultKind(enum.StrEnum):
    # Messages between a caller (or executor) and the engine.
    MESSAGE_DROP = "message_drop"
    MESSAGE_DUPLICATE = "message_duplicate"
    MESSAGE_REORDER = "message_reorder"
    MESSAGE_DELAY = "message_delay"
    # The store.
    LOST_COMMIT_REPLY = "lost_commit_reply"
    WRITE_FAILS_BEFORE_COMMIT = "write_fails_before_commit"
    DATABASE_RESTART = "database_restart"
    # Components.
    ENGINE_CRASH = "engine_crash"
    RELAY_CRASH = "relay_crash"
    EXECUTOR_CRASH = "executor_crash"
    STREAM_LOSS = "stream_loss"
    # The network.
    NODE_OUTAGE = "node_outage"
    LIQUIDITY_DEPLETION = "liquidity_depletion"
    STALE_CALLBACK = "stale_callback"
    EXPIRY = "expiry"


# What this slice can apply without the bus wiring; the rest are drawn only when a run asks.
SLICE_KINDS: Final = (
    FaultKind.MESSAGE_DROP, FaultKind.MESSAGE_DUPLICATE, FaultKind.MESSAGE_REORDER,
    FaultKind.MESSAGE_DELAY, FaultKind.LOST_COMMIT_REPLY, FaultKind.WRITE_FAILS_BEFORE_COMMIT,
    FaultKind.DATABASE_RESTART, FaultKind.ENGINE_CRASH, FaultKind.NODE_OUTAGE,
    FaultKind.LIQUIDITY_DEPLETION, FaultKind.STALE_CALLBACK, FaultKind.EXPIRY,
)  # fmt: skip
# A database restart refuses every statement for this many steps.
RESTART_STEPS: Final = 2


@dataclass(frozen=True, slots=True, order=True)
class Fault:
    step: int
    kind: FaultKind
    duration: int = 1  # steps it lasts

    def text(self) -> str:
        return f"step {self.step:4d}: {self.kind}" + (
            f" for {self.duration} steps" if self.duration > 1 else ""
        )


@dataclass(frozen=True, slots=True)
class FaultPlan:
    seed: int
    faults: tuple[Fault, ...]

    @classmethod
    def draw(
        cls,
        seed: int,
        *,
        steps: int,
        rate: float = 0.15,
        kinds: Sequence[FaultKind] = SLICE_KINDS,
    ) -> FaultPlan:
        """Each step gets a fault with probability ``rate``; its kind is drawn uniformly.
        Drawn from its own generator, so the plan does not depend on what the run does."""
        rng = random.Random(f"faults:{seed}")
        faults = []
        for step in range(steps):
            if rng.random() < rate:
                kind = kinds[rng.randrange(len(kinds))]
                duration = RESTART_STEPS if kind == FaultKind.DATABASE_RESTART else 1
                faults.append(Fault(step, kind, duration))
        return cls(seed, tuple(faults))

    def at_start(self, step: int) -> list[FaultKind]:
        """The faults that strike at ``step`` (the world keeps their durations itself)."""
        return [f.kind for f in self.faults if f.step == step]

    def at(self, step: int) -> list[FaultKind]:
        return [f.kind for f in self.faults if f.step <= step < f.step + f.duration]

    def text(self) -> str:
        return "\n".join([f"seed {self.seed}: {len(self.faults)} faults"] +
                         [f.text() for f in self.faults])  # fmt: skip


class StoreDown(ConnectionResetError):
    """What a dropped database connection looks like to the engine (a transient failure)."""


class FaultyStore(InMemoryEventStore):
    """The in-memory store, with the plan's store faults armed by the runner per step.

    ``fail_next_append``: the next append raises before anything is written.
    ``lose_next_reply``: the next append commits, then raises as if its reply was lost.
    ``down``: every append raises (a database restart), until the runner brings it back."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_next_append = False
        self.lose_next_reply = False
        self.down = False
        self.injected: dict[str, int] = {}

    def _count(self, kind: FaultKind) -> None:
        self.injected[kind.value] = self.injected.get(kind.value, 0) + 1

    async def append(
        self,
        events: Sequence[NewEvent],
        claims: Sequence[IdempotencyClaim] = (),
        fence: AppendFence | None = None,
    ) -> int | None:
        if self.down:
            self._count(FaultKind.DATABASE_RESTART)
            raise StoreDown("the database is restarting")
        if self.fail_next_append:
            self.fail_next_append = False
            self._count(FaultKind.WRITE_FAILS_BEFORE_COMMIT)
            raise StoreDown("connection lost before commit")
        position = await super().append(events, claims, fence)
        if self.lose_next_reply and events:
            self.lose_next_reply = False
            self._count(FaultKind.LOST_COMMIT_REPLY)
            raise StoreDown("connection lost after commit")
        return position
