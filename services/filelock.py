"""An exclusive ``flock`` on a lock file, given up after a deadline: the read-modify-write of
files several processes share (``endpoints.json``, the credential registry) happens under it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

# How often a waiter tries again: a holder keeps the lock for one small write.
POLL_S: Final = 0.01


@contextlib.contextmanager
def exclusive(
    path: Path,
    *,
    wait_s: float,
    refused: Callable[[str], Exception] = TimeoutError,
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600); raise ``refused(message)`` when
    another process holds it for longer than ``wait_s``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise refused(f"{path} held by another process for {wait_s} s") from None
                time.sleep(POLL_S)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
