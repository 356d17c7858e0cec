"""Sampling profiles of the benchmark's Python processes, taken with py-spy during a saturated
run (`corridor bench --profile DIR`, `make profile`): where each process spends its time.

py-spy reads the target's memory from outside (``--nonblocking``: the target is never paused),
which needs ptrace permission: root, ``CAP_SYS_PTRACE``, or ``kernel.yama.ptrace_scope`` 0.
A process that cannot be profiled gets its reason in the summary instead of a profile.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PROFILE_RATE_HZ = 100
PROFILE_S = 4
TOP_FUNCTIONS = 25


def py_spy_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    return str(beside_python) if beside_python.exists() else shutil.which("py-spy")


@dataclass
class Profiler:
    """py-spy recorders for named processes; ``start`` returns at once, ``finish`` waits."""

    out_dir: Path
    duration_s: int = PROFILE_S
    _recorders: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _problems: dict[str, str] = field(default_factory=dict)

    def start(self, pids: dict[str, int]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        binary = py_spy_binary()
        for name, pid in pids.items():
            if binary is None:
                self._problems[name] = "py-spy not found (it comes with `pip install -e .[dev]`)"
                continue
            argv = [binary, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE_HZ),
                    "--duration", str(self.duration_s), "--nonblocking", "--format", "raw",
                    "--output", str(self._folded(name))]  # fmt: skip
            log = open(self.out_dir / f"{name}.py-spy.log", "wb")  # noqa: SIM115 - child's
            try:
                self._recorders[name] = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            finally:
                log.close()

    def finish(self) -> str:
        """Wait for the recorders; write and return ``summary.txt``."""
        for name, recorder in self._recorders.items():
            try:
                code = recorder.wait(timeout=self.duration_s + 30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                code = -1
            if code != 0 or not self._folded(name).exists():
                log = (self.out_dir / f"{name}.py-spy.log").read_text(errors="replace")
                self._problems[name] = f"py-spy exited {code}: {log.strip()[-300:]}"
        parts = []
        for name in sorted({*self._recorders, *self._problems}):
            if name in self._problems:
                parts.append(f"== {name}: not profiled: {self._problems[name]}\n")
            else:
                parts.append(summarise(name, self._folded(name).read_text()))
        summary = "\n".join(parts)
        (self.out_dir / "summary.txt").write_text(summary)
        return summary

    def _folded(self, name: str) -> Path:
        return self.out_dir / f"{name}.folded"


def summarise(name: str, folded: str, top: int = TOP_FUNCTIONS) -> str:
    """The functions with most samples of their own (self) and under them (inclusive), from
    py-spy's collapsed stacks (``frame;frame;frame count`` per line, outermost first)."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for function in set(frames):
            under[function] += count
    if not total:
        return f"== {name}: no samples (the process was idle)\n"
    lines = [f"== {name}: {total} samples at {PROFILE_RATE_HZ} Hz", "-- self"]
    lines += [f"{n / total:6.1%}  {function}" for function, n in own.most_common(top)]
    lines.append("-- inclusive")
    lines += [f"{n / total:6.1%}  {function}" for function, n in under.most_common(top)]
    return "\n".join(lines) + "\n"


def _function(frame: str) -> str:
    """``name (path/to/file.py:LINE)`` without the line and the site-packages prefix, so that
    a function's samples add up across its lines."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    path = path.split("site-packages/")[-1]
    return f"{function} ({path})" if path else function
