"""A file's parsed content, read again when the file changes: the credential registry and the
agent key registry are both followed this way while the engine runs.

The file is looked at (one ``stat``) at most once per ``check_interval_s``: a ``stat`` per
command would cost the hot path more than a lookup, and a change that takes a second to apply is
well inside what a reload of nats-server's own configuration takes. A lookup that misses may
look again after ``MISS_RECHECK_INTERVAL_S`` (an entry added a moment ago is found; a flood of
unknown ids costs at most one ``stat`` per interval). A file that cannot be read or fails its
checks leaves the previous content in force, and is logged: a half-written file must neither
lock everyone out nor let anyone in. A missing file is the empty content.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Generic, TypeVar

import structlog

log = structlog.get_logger("corridor.identity")

CHECK_INTERVAL_S: Final = 1.0
MISS_RECHECK_INTERVAL_S: Final = 0.05
# Logged error details are cut to this many characters.
DETAIL_CHARS_MAX: Final = 200

T = TypeVar("T")
# What identifies one version of the file: os.replace gives a new inode even when the mtime
# and size happen to match.
_Version = tuple[int, int, int]


class FollowedFile(Generic[T]):
    def __init__(
        self,
        path: Path,
        *,
        load: Callable[[Path], T],
        empty: T,
        refused: tuple[type[Exception], ...],
        what: str,
        count: Callable[[T], int],
        check_interval_s: float = CHECK_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert check_interval_s >= 0
        self.path = path
        self._load = load
        self._refused: tuple[type[Exception], ...] = (OSError, *refused)
        self._what = what
        self._count = count
        self._check_interval_s = check_interval_s
        self._monotonic = monotonic
        self._version: _Version | None = None
        self._loaded = False
        self._current = empty
        self._checked_at: float | None = None
        self.reloads = 0
        self.refresh()

    @property
    def current(self) -> T:
        self.refresh()
        return self._current

    def after_miss(self) -> T:
        """The content again, looked at sooner than usual: the caller did not find an entry."""
        self.refresh(interval_s=min(self._check_interval_s, MISS_RECHECK_INTERVAL_S))
        return self._current

    def refresh(self, *, interval_s: float | None = None) -> None:
        now = self._monotonic()
        interval_s = self._check_interval_s if interval_s is None else interval_s
        if self._checked_at is not None and now - self._checked_at < interval_s:
            return
        self._checked_at = now
        version = _version(self.path)
        if self._loaded and version == self._version:
            return
        try:
            content = self._load(self.path)
        except self._refused as exc:
            # Not remembered as seen: the next check tries again (the writer may be mid-way).
            log.error(f"{self._what}_unreadable", path=str(self.path), error=type(exc).__name__,
                      detail=str(exc)[:DETAIL_CHARS_MAX])  # fmt: skip
            return
        if version is None:
            log.warning(f"{self._what}_file_missing", path=str(self.path))
        self._version = version
        self._loaded = True
        self._current = content
        self.reloads += 1
        log.info(f"{self._what}_loaded", path=str(self.path), live=self._count(content))


def _version(path: Path) -> _Version | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)
