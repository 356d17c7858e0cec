"""Child-process plumbing: free ports, readiness waits, and no orphans."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent(sig: int) -> Callable[[], None]:
    """Ask the kernel to signal the child when we die, even by SIGKILL.

    It runs after the uid switch, because changing credentials clears the setting.
    """

    def set_pdeathsig() -> None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return set_pdeathsig


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    stop_signal: int = signal.SIGTERM,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    try:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **as_user(user),
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal goes to us; we stop children in order
            preexec_fn=_die_with_parent(stop_signal),
        )
    finally:
        log.close()


def as_user(user: str | None, cwd: str = "/") -> dict[str, Any]:
    """``subprocess`` arguments that run a child as ``user`` with only that user's primary group.

    Without ``extra_groups=[]`` the child would keep root's supplementary groups. The working
    dir is one every user can enter: ours may be inside a clone that user cannot reach.
    """
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": [], "cwd": cwd}


def reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` can search/execute ``path``, so can traverse every parent of it."""
    probe = subprocess.run(
        ["test", "-x", str(path)], capture_output=True, check=False, **as_user(user)
    )
    return probe.returncode == 0


def stop(proc: subprocess.Popen[bytes], *, sig: int, timeout_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout_s)


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``ready`` until it is true; fail fast if the process died."""
    deadline = time.monotonic() + timeout_s
    delay_s = 0.01
    while True:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s}s{_tail(log_path)}")
        time.sleep(delay_s)  # a poll interval, not synchronisation
        delay_s = min(delay_s * 2, 0.2)


def _tail(log_path: Path | None, lines: int = 15) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log_path) + " ---\n" + "\n".join(text)
