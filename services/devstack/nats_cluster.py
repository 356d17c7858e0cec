"""A nats-server JetStream cluster on loopback: ``size`` ``NatsServer``s with the same nkey
users, each with its own name, store and cluster port, routed to the others (ADR 0196).

Clients are given every member's URL (``url`` is them comma-separated, which
``services.bus.jetstream.connect`` and ``NATS_URL`` take), so a connection moves to a live
member when its own dies. A killed member restarts on its ports and store, and catches up
from the stream leaders.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from services.devstack.nats import NatsServer
from services.devstack.process import free_port, wait_until
from services.identity.registry import Registry

CLUSTER_NAME: Final = "corridor"
# Three members start in about a second here; a JetStream meta leader needs a quorum first.
START_TIMEOUT_S: Final = 30.0


@dataclass
class NatsCluster:
    data_dir: Path
    registry: Registry = field(default_factory=Registry)
    size: int = 3
    sync_interval: str = "always"
    members: list[NatsServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        route_ports = [free_port() for _ in range(self.size)]
        for index in range(self.size):
            routes = [f"nats://127.0.0.1:{p}" for i, p in enumerate(route_ports) if i != index]
            self.members.append(
                NatsServer(
                    self.data_dir / f"n{index}",
                    registry=self.registry,
                    sync_interval=self.sync_interval,
                    server_name=f"n{index}",
                    cluster={
                        "name": CLUSTER_NAME,
                        "listen": f"127.0.0.1:{route_ports[index]}",
                        "routes": routes,
                    },
                )
            )

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        """Every member, comma-separated: what a client is given."""
        return ",".join(self.urls)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        for member in self.members:
            member.launch()
        for member in self.members:
            self._wait_healthy(member, timeout_s)
            member.started = True
        wait_until(self.has_meta_leader, timeout_s=timeout_s, what="a JetStream meta leader")

    def kill(self, index: int) -> int:
        """kill -9 one member; returns its pid."""
        member = self.members[index]
        assert member.proc is not None, f"member {index} runs"
        pid = member.proc.pid
        member.proc.send_signal(signal.SIGKILL)
        member.proc.wait(timeout=30)
        member.proc = None
        return pid

    def restart(self, index: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start a killed member on its ports and store; returns once it is healthy."""
        member = self.members[index]
        member.launch()
        self._wait_healthy(member, timeout_s)

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def has_meta_leader(self) -> bool:
        return any(self.jsz(i).get("meta_cluster", {}).get("leader") for i in self.running())

    def running(self) -> list[int]:
        return [i for i, m in enumerate(self.members) if m.proc is not None]

    def jsz(self, index: int, query: str = "") -> dict[str, Any]:
        try:
            url = f"{self.members[index].monitor_url}/jsz{query}"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except (OSError, ValueError):
            return {}

    def stream_leader(self, stream: str) -> int | None:
        """The index of the member leading ``stream`` (from any running member's view)."""
        names = {m.server_name: i for i, m in enumerate(self.members)}
        for i in self.running():
            for account in self.jsz(i, "?streams=true").get("account_details", []):
                for info in account.get("stream_detail", []):
                    if info.get("name") == stream:
                        leader = (info.get("cluster") or {}).get("leader")
                        if leader in names:
                            return names[leader]
        return None

    def _wait_healthy(self, member: NatsServer, timeout_s: float) -> None:
        wait_until(
            member.healthy,
            timeout_s=timeout_s,
            what=f"nats-server {member.server_name}",
            proc=member.proc,
            log_path=member.data_dir / "nats.log",
        )
