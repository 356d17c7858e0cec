"""Time and fresh ids enter the engine here, so a simulation can replace both."""

from __future__ import annotations

import time
import uuid
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class IdSource(Protocol):
    def new_id(self) -> str: ...


class RandomIds:
    def new_id(self) -> str:
        return str(uuid.uuid4())
