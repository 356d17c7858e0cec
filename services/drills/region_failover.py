"""``corridor drill region-failover``: a region's nodes down under load, and back (ADR 0191).

1. A steady load runs until ``before_settled`` intents have settled through ``region``.
2. The region's own nodes (role ``ours``) go offline in the simulated network (its control
   socket's ``offline`` fault: RPCs refused, channels inactive). Their executors' health
   reports turn unhealthy and the engine's router passes over them (ADR 0204, 0014).
3. The drill waits for ``moved_settled`` settlements through other regions of attempts
   dispatched after the cut, then brings the nodes back online and waits for a settlement
   through ``region`` of an attempt dispatched after the return.
4. The load stops; once every accepted intent is at rest, the ledger check.

Where an intent settled, and when, comes from the pilot metrics' own fold of the log
(``projections.pilot_metrics``): the intents' documents carry each attempt's region, node and
dispatch time. The times are reported, never judged; only "it happened before the deadline"
decides the verdict.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from projections.pilot_metrics import PilotMetrics
from services.bus.jetstream import connect as nats_connect
from services.drills import ledger
from services.drills.load import SteadyLoad
from services.drills.report import DrillReport
from services.drills.target import Target
from services.sim.jsonrpc import call_unix

NAME: Final = "region-failover"
# The longest a drill waits for traffic to move or return: beyond it the drill reports failure.
DEADLINE_S_MAX: Final = 600.0
ACCEPT_DEADLINE_S: Final = 120.0
REST_DEADLINE_S: Final = 120.0
POLL_S: Final = 0.25
CONTROL_TIMEOUT_S: Final = 10.0
OUR_ROLE: Final = "ours"


@dataclass(frozen=True)
class Options:
    region: str = "us"
    intents: int = 200  # the load's budget at 5/s: it stops early once the region is back
    deadline_s: float = 90.0
    rate_per_s: float = 5.0
    tag: str = ""
    before_settled: int = 3
    moved_settled: int = 3
    # False leaves the region down: a test's way to prove the drill reports failure.
    bring_back: bool = True


@dataclass(frozen=True)
class Settlement:
    region: str
    dispatched_at_ms: int
    settled_at_ms: int


class _Observer:
    """Folds the load's intents' events (re-read each poll) the way the pilot metrics do."""

    def __init__(self, target: Target, load: SteadyLoad) -> None:
        self._target, self._load = target, load
        self.metrics = PilotMetrics()

    async def settlements(self) -> list[Settlement]:
        events = await ledger.recorded_events(self._target.database_url, list(self._load.accepted))
        self.metrics = PilotMetrics()
        for event in events:
            self.metrics.apply(event)
        found = []
        for doc in self.metrics.docs.values():
            if doc is None or doc.get("state") != "settled" or doc.get("settled_at_ms") is None:
                continue
            paid = [a for a in doc["attempts"] if a["outcome"] == "succeeded"] or doc["attempts"]
            found.append(
                Settlement(
                    region=str(doc["region"]),
                    dispatched_at_ms=int(paid[-1]["dispatched_at_ms"]),
                    settled_at_ms=int(doc["settled_at_ms"]),
                )
            )
        return sorted(found, key=lambda s: s.settled_at_ms)

    async def until(self, done: Any, *, timeout_s: float) -> list[Settlement] | None:
        """The settlements once ``done(settlements)`` holds; None at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = await self.settlements()
            if done(found):
                return found
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(POLL_S)  # a poll interval, not synchronisation


async def _set_region(target: Target, nodes: list[str], *, online: bool) -> None:
    for node in nodes:
        await call_unix(
            target.sim_control, "fault", {"kind": "online" if online else "offline", "node": node},
            timeout_s=CONTROL_TIMEOUT_S,
        )  # fmt: skip


def region_nodes(target: Target, region: str) -> list[str]:
    return sorted(
        str(n["name"])
        for n in target.sim_nodes
        if n.get("role") == OUR_ROLE and n.get("region") == region
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def run(target: Target, options: Options) -> DrillReport:
    report = DrillReport(drill=NAME)
    nodes = region_nodes(target, options.region)
    report.figures["region"] = options.region
    report.figures["nodes_taken_down"] = nodes
    if not nodes:
        report.checks[f"region {options.region} has nodes of ours"] = False
        return report
    tag = options.tag or f"drill-failover-{_now_ms()}"
    nc = await nats_connect(target.nats_url, name="corridor-drill-load", creds=target.caller_creds)
    down = False
    load = SteadyLoad(target, tag, options.intents, nc, rate_per_s=options.rate_per_s)
    try:
        await load.start()
        watch = _Observer(target, load)
        region = options.region

        def on_region(found: list[Settlement], after_ms: int) -> int:
            return sum(s.region == region and s.dispatched_at_ms >= after_ms for s in found)

        before = await watch.until(
            lambda f: on_region(f, 0) >= options.before_settled, timeout_s=ACCEPT_DEADLINE_S
        )
        report.checks[f"traffic settles through {region} before the cut"] = before is not None
        if before is None:
            return report
        down_ms = _now_ms()
        await _set_region(target, nodes, online=False)
        down = True
        moved = await watch.until(
            lambda f: (
                sum(s.region != region and s.dispatched_at_ms >= down_ms for s in f)
                >= options.moved_settled
            ),
            timeout_s=options.deadline_s,
        )
        report.checks["traffic moved to other regions"] = moved is not None
        up_ms = _now_ms()
        if options.bring_back:
            await _set_region(target, nodes, online=True)
            down = False
        returned = None
        if moved is not None:
            returned = await watch.until(
                lambda f: on_region(f, up_ms) >= 1, timeout_s=options.deadline_s
            )
        report.checks[f"traffic returned to {region}"] = returned is not None
        load.stop()
        await load.done()
    finally:
        await load.cancel()
        if down:
            await _set_region(target, nodes, online=True)  # never leave the stack cut
        await nc.close()
    found = await watch.settlements()
    _timings(report, found, region, down_ms, up_ms)
    report.figures["load"] = {
        "accepted": len(load.accepted), "refused": load.refused, "client_retries": load.retried,
    }  # fmt: skip
    report.figures["routes_passing_over_region"] = _passed_over(watch.metrics, region)
    pilot = watch.metrics.report()
    report.figures["pilot_metrics"] = {
        k: pilot[k] for k in ("intents", "by_state", "route_failure_ratio", "auto_recovery_rate",
                              "failures_by_reason")
    }  # fmt: skip
    rest = await ledger.wait_for_rest(
        target.database_url, target.sim_control, load.accepted, timeout_s=REST_DEADLINE_S
    )
    report.figures["ledger"] = rest.summary()
    report.checks["ledger holds (no double payment, no lost intent)"] = rest.holds
    return report


def _passed_over(metrics: PilotMetrics, region: str) -> dict[str, int]:
    """Why routing passed over the region's nodes, counted over every route decision: the
    intents' own record of the move (``IntentRouted.rejected``)."""
    reasons: Counter[str] = Counter()
    for doc in metrics.docs.values():
        for route in (doc or {}).get("routes", ()):
            for rejected in route.get("rejected", ()):
                if rejected.get("region") == region:
                    reasons[f"{rejected['node']}: {rejected['reason']}"] += 1
    return dict(sorted(reasons.items()))


def _timings(
    report: DrillReport, found: list[Settlement], region: str, down_ms: int, up_ms: int
) -> None:
    elsewhere = [s for s in found if s.region != region and s.dispatched_at_ms >= down_ms]
    back = [s for s in found if s.region == region and s.dispatched_at_ms >= up_ms]
    report.figures["time_to_move_ms"] = elsewhere[0].settled_at_ms - down_ms if elsewhere else None
    report.figures["time_to_return_ms"] = back[0].settled_at_ms - up_ms if back else None
    phases: dict[str, Counter[str]] = {"before": Counter(), "during": Counter(), "after": Counter()}
    for s in found:
        phase = (
            "before"
            if s.settled_at_ms < down_ms
            else "during"
            if s.settled_at_ms < up_ms
            else "after"
        )
        phases[phase][s.region] += 1
    report.figures["settled_by_region"] = {p: dict(sorted(c.items())) for p, c in phases.items()}
    during = phases["during"]
    total = sum(during.values())
    report.figures["share_elsewhere_while_down_pct"] = (
        None if not total else (100 * (total - during[region])) // total
    )
