"""A progress line on stderr for long work, shown only when stderr is a terminal.

Use it as a context manager; it writes nothing at all when stderr is a file or a pipe, so
scripts and logs never see ``\\r`` noise::

    from services.cli.progress import Progress

    with Progress("replay", total=events_total, unit="events") as progress:
        for batch in batches:
            write(batch)
            progress.advance(len(batch))

``total=None`` shows a count without a percentage. ``update(done)`` sets the count instead of
adding to it. Updates are redrawn at most every ``REDRAW_S`` seconds, so calling ``advance``
once per item costs almost nothing. Leaving the block erases the line, so what the command
prints next starts on a clean line. No dependency beyond the standard library.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Final, TextIO

# Ten redraws a second look live without costing the work measurable time.
REDRAW_S: Final = 0.1


class Progress:
    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "",
        stream: TextIO | None = None,
    ) -> None:
        assert total is None or total >= 0, total
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self._stream)
        self._drawn_at = 0.0
        self._width = 0

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, count: int = 1) -> None:
        """Add ``count`` to the work done."""
        self.update(self.done + count)

    def update(self, done: int) -> None:
        """Set the work done to ``done``."""
        self.done = done
        self._draw(force=False)

    def close(self) -> None:
        """Erase the line; safe to call twice."""
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
        self._width = 0

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total is None:
            return f"{self.label}: {self.done:,}{unit}"
        percent = 100 * self.done // self.total if self.total else 100
        return f"{self.label}: {self.done:,}/{self.total:,}{unit} ({percent} %)"

    def _draw(self, *, force: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < REDRAW_S:
            return
        self._drawn_at = now
        line = self.text()
        # Pad over a longer previous line instead of clearing first: no flicker.
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = max(self._width, len(line))


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
