"""The simulation's time, ids and order: all drawn from one seed.

``VirtualClock`` is the engine's ``Clock`` (``services/engine/clock.py``) that moves only when
the scheduler advances it; ``SeededIds`` its ``IdSource`` from the seeded generator (no uuid4);
``RunQueue`` holds ready tasks and hands them out in an order the seed chooses. Nothing here
reads the wall clock or iterates a set, so a seed replays exactly (ADR 0099).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# Where the virtual clock starts: a fixed instant (2027-01-15), so invoices and deadlines
# carry realistic timestamps without reading the wall clock.
EPOCH_MS = 1_800_000_000_000


class VirtualClock:
    def __init__(self, start_ms: int = EPOCH_MS) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        assert ms >= 0, "time does not run backwards"
        self._now_ms += ms


class SeededIds:
    """UUID-shaped ids from the seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def new_id(self) -> str:
        h = f"{self._rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


Task = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class ReadyTask:
    name: str
    run: Task
    seq: int  # order of arrival, so equal draws never depend on anything but the seed


@dataclass
class RunQueue:
    """Ready tasks, handed out in a seeded order; every choice goes to the trace."""

    rng: random.Random
    trace: list[str] = field(default_factory=list)
    _ready: list[ReadyTask] = field(default_factory=list)
    _seq: int = 0

    def push(self, name: str, run: Task) -> None:
        self._seq += 1
        self._ready.append(ReadyTask(name, run, self._seq))

    def __len__(self) -> int:
        return len(self._ready)

    def take(self, at_most: int) -> list[ReadyTask]:
        """Up to ``at_most`` ready tasks in a seeded order (the rest stay queued)."""
        count = min(at_most, len(self._ready))
        chosen = self.rng.sample(range(len(self._ready)), count)
        picked = [self._ready[i] for i in chosen]
        keep = set(chosen)
        self._ready = [t for i, t in enumerate(self._ready) if i not in keep]
        return picked

    def note(self, line: str) -> None:
        self.trace.append(line)
