"""What the demo shows while it runs: a few phase lines on stderr, and a progress line for the
workload when stderr is a terminal. stdout is kept for the report; logs go to a file."""

from __future__ import annotations

import sys
from typing import TextIO

from services.cli.progress import Progress

PHASES = 3


class Screen:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr

    def say(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def phase(self, number: int, text: str) -> None:
        assert 1 <= number <= PHASES
        self.say(f"[{number}/{PHASES}] {text}")

    def progress(self, label: str, *, total: int, unit: str) -> Progress:
        """A redrawn line on a terminal; nothing at all on a file or a pipe."""
        return Progress(label, total=total, unit=unit, stream=self._stream)


class Silent(Screen):
    """For callers that only want the report (tests, other programs)."""

    def say(self, text: str) -> None:
        return None

    def progress(self, label: str, *, total: int, unit: str) -> Progress:
        progress = Progress(label, total=total, unit=unit, stream=self._stream)
        progress.enabled = False
        return progress
