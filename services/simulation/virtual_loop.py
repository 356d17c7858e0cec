"""An asyncio loop on virtual time: where a loop would block in ``select``, time jumps instead.

Give the loop's ``wall_s`` to ``SimNetwork`` as ``now_s`` and the network's HTLC schedule, its
driver's waits, ``asyncio.sleep`` and ``asyncio.timeout`` all run on one clock that moves only
when every task is waiting. A run then takes no real time and repeats exactly. Nothing here may
wait on a socket or a thread: a loop with nothing ready and no timer would wait forever, and
says so instead.

Loop time counts from 0, like ``time.monotonic``: asyncio adds its clock resolution (1 ns) to
it to find due timers, which a float the size of a Unix time would round away.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

# A plausible date for invoices (ADR 0077): 2023-11-14.
EPOCH_S_DEFAULT: Final = 1_700_000_000.0


# Virtual time one turn of the loop takes when something is ready.
TURN_S: Final = 1e-6


class WouldBlockForever(RuntimeError):
    """Every task waits and no timer is due: in a closed simulation, a deadlock."""


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)  # the loop's own self-pipe: never a real wait
        if ready or timeout == 0:
            # Every turn of the loop takes a moment, as on a real CPU. Without it a deadline
            # a few ulps ahead (a wait of 7e-15 s) is due at once and never reached: a loop
            # that waits for it spins at one instant for ever (found by the simulation).
            self._advance(TURN_S)
            return ready
        if timeout is None:
            raise WouldBlockForever("every task waits and no timer is due")
        self._advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, *, epoch_s: float = EPOCH_S_DEFAULT) -> None:
        self._elapsed_s = 0.0
        self.epoch_s = epoch_s
        super().__init__(_VirtualSelector(self._advance))

    def time(self) -> float:
        return self._elapsed_s

    def wall_s(self) -> float:
        """Seconds since the Unix epoch on this loop's clock: the network's ``now_s``."""
        return self.epoch_s + self._elapsed_s

    def _advance(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self._elapsed_s += seconds


def virtual_loop() -> VirtualTimeLoop:
    """The running loop, which must be a ``VirtualTimeLoop``."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop), loop
    return loop


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        # A run that stopped early (WouldBlockForever) leaves tasks waiting: end them here.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(_settle(pending))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _settle(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


class LoopClock:
    """The engine's ``Clock`` (``services/engine/clock.py``) on a virtual-time loop's wall."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop

    def now_ms(self) -> int:
        return int(self._loop.wall_s() * 1000)

    def now_s(self) -> float:
        return self._loop.wall_s()
