"""Costs of a bench run read from the operating system and the servers: CPU, waits for a
core and wake-ups per process (``/proc``), NATS message counts (the monitoring endpoint) and
database transactions (``pg_stat_database``), turned into figures per settled intent."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from services.devstack import DevStack


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds consumed so far by a process and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _sum_over_threads(pid: int, read: Callable[[Path], float]) -> float:
    """``read(/proc/<pid>/task/<tid>)`` summed over the threads of a process; a thread that
    ends meanwhile counts as zero."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    total = 0.0
    for task in tasks:
        try:
            total += read(task)
        except (OSError, IndexError, ValueError):
            continue
    return total


def _runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of a process spent runnable but waiting for a CPU
    (the second field of ``/proc/<pid>/task/<tid>/schedstat``)."""

    def waited_s(task: Path) -> float:
        return int((task / "schedstat").read_text().split()[1]) / 1e9

    return _sum_over_threads(pid, waited_s)


def _wakeups(pid: int) -> float:
    """Times the threads of a process went to sleep and were woken again (voluntary context
    switches): at moderate load each costs more than the work it wakes up for."""

    def voluntary_switches(task: Path) -> float:
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
        return 0

    return _sum_over_threads(pid, voluntary_switches)


Snapshot = dict[str, dict[int, float]]


def _snapshot(groups: dict[str, list[int]], read: Callable[[int], float]) -> Snapshot:
    return {name: {pid: read(pid) for pid in pids} for name, pids in groups.items()}


def _per_intent_ms(before: Snapshot, after: Snapshot, n: int) -> dict[str, float]:
    # Per process, so that one started during the run (a new database connection) counts
    # from zero rather than being missed.
    return {
        name: round(
            sum(value - before.get(name, {}).get(pid, 0.0) for pid, value in pids.items())
            * 1000 / n, 3,
        )
        for name, pids in after.items()
    }  # fmt: skip


@dataclass
class Meter:
    """Counters taken before a run, turned into costs per settled intent after it."""

    stack: DevStack
    db_url: str
    groups: Callable[[], dict[str, list[int]]]
    nats: dict[str, int]
    pg: dict[str, int]
    cpu_s: Snapshot
    wait_s: Snapshot
    wakeups: Snapshot

    @classmethod
    async def start(
        cls, stack: DevStack, db_url: str, groups: Callable[[], dict[str, list[int]]]
    ) -> Meter:
        now = groups()
        return cls(
            stack=stack, db_url=db_url, groups=groups,
            nats=_nats_counters(monitor_url(stack)), pg=await _pg_counters(db_url),
            cpu_s=_snapshot(now, cpu_s), wait_s=_snapshot(now, _runqueue_wait_s),
            wakeups=_snapshot(now, _wakeups),
        )  # fmt: skip

    async def per_intent(self, settled: int) -> dict[str, Any]:
        nats, pg = _nats_counters(monitor_url(self.stack)), await _pg_counters(self.db_url)
        now = self.groups()
        n = max(1, settled)
        cpu_ms = _per_intent_ms(self.cpu_s, _snapshot(now, cpu_s), n)
        total_ms = sum(cpu_ms.values())
        return {
            # Steadier than intents/s on a shared machine: a slower or busier host stretches
            # the wall clock far more than the CPU each intent needs.
            "cpu_ms_total": round(total_ms, 3),
            "intents_per_cpu_s": round(1000 / total_ms, 1) if total_ms else None,
            "cpu_ms_without_simulated_network": round(
                total_ms - cpu_ms.get("simulated_network", 0.0), 3
            ),
            "events": round((pg["events"] - self.pg["events"]) / n, 2),
            "db_transactions": round((pg["xacts"] - self.pg["xacts"]) / n, 2),
            "nats_messages_in": round((nats["in_msgs"] - self.nats["in_msgs"]) / n, 2),
            "nats_messages_out": round((nats["out_msgs"] - self.nats["out_msgs"]) / n, 2),
            "cpu_ms_by_process": cpu_ms,
            # Time each process was ready to run but waited for a core: on a shared machine
            # this, not Corridor's own work, is where much of the latency under load goes.
            "runqueue_wait_ms_by_process": _per_intent_ms(
                self.wait_s, _snapshot(now, _runqueue_wait_s), n
            ),
            "wakeups_by_process": {
                name: round(count / 1000, 1)
                for name, count in _per_intent_ms(self.wakeups, _snapshot(now, _wakeups), n).items()
            },
        }


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _nats_counters(monitor_url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{monitor_url}/varz", timeout=5) as resp:
        varz = json.loads(resp.read())
    return {"in_msgs": int(varz["in_msgs"]), "out_msgs": int(varz["out_msgs"])}


async def _pg_counters(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit + xact_rollback AS xacts, tup_inserted, tup_fetched"
            " FROM pg_stat_database WHERE datname = current_database()"
        )
        events = await conn.fetchval("SELECT position FROM event_log_head")
    finally:
        await conn.close()
    assert row is not None
    return {"xacts": row["xacts"], "tup_inserted": row["tup_inserted"], "events": events}


def monitor_url(stack: DevStack) -> str:
    nats = stack._nats  # the embedded server knows its monitoring port
    assert nats is not None, "cost figures need the embedded nats-server"
    return f"http://127.0.0.1:{nats.monitor_port}"


def host_cpu_ticks() -> list[int]:
    """The machine's CPU time counters (``/proc/stat``: user, nice, system, idle, iowait, irq,
    softirq, steal)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return []
    return [int(x) for x in first[1:9]]


def steal_pct(before: list[int], after: list[int]) -> float | None:
    """Share of the run's CPU time the hypervisor gave to other guests: on a shared VM this is
    what makes figures move between runs of the same build."""
    if len(before) < 8 or len(after) < 8:
        return None
    total = sum(after) - sum(before)
    return round(100 * (after[7] - before[7]) / total, 1) if total > 0 else None
