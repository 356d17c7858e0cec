"""One drill, start to verdict: the stack, the load with its fault, the ledger check."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from services.bus.jetstream import connect
from tests.faults.harness import Harness
from tests.faults.ledger import Verdict, check, wait_for_rest
from tests.faults.load import Fault, Submit, invoices, run_load, submit_body

# Intents per drill, and after how many acceptances a workload-triggered fault strikes: a
# third of the way in, so it meets intents in every state and the load goes on after it.
INTENTS: Final = 45
FAULT_AFTER: Final = 15
# Each drill's observations, printed at the end of the session (tests/faults/conftest.py).
OBSERVED: list[dict[str, Any]] = []


@dataclass
class Outcome:
    submits: list[Submit]
    verdict: Verdict
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> list[str]:
        return [s.intent_id for s in self.submits if s.intent_id is not None]


async def drive(
    harness: Harness,
    name: str,
    *,
    fault: Fault | None,
    fault_after: int | None = FAULT_AFTER,
    bodies: list[dict[str, Any]] | None = None,
    notes: dict[str, Any] | None = None,
    extra_accepted: list[str] | None = None,
    pause_s: float = 0.0,
) -> Outcome:
    """Run the seeded load (or ``bodies``) with ``fault``, then wait for every accepted intent
    to come to rest. ``extra_accepted``: intents the fault got accepted some other way (filled
    in by the time it ends). Records the drill's counts in ``OBSERVED`` whatever the verdict."""
    began = time.monotonic()
    observed_notes: dict[str, Any] = {}
    nc = await connect(harness.stack.nats_url, name=f"drill-{name}", creds=harness.caller_creds)
    try:
        if bodies is None:
            bodies = await honest_bodies(harness, name, INTENTS)
        so_far: list[str] = []

        async def observed() -> None:
            # What the fault meets: intents accepted and not yet at rest at that moment.
            at = await check(harness.auditor_url, control_path(harness), list(so_far))
            observed_notes["at_fault"] = {"accepted": at.accepted, "in_motion": len(at.not_at_rest)}
            assert fault is not None
            await fault()

        workload_fault = observed if fault is not None and fault_after is not None else fault
        submits = await run_load(
            nc,
            bodies,
            fault_after=fault_after,
            fault=workload_fault,
            accepted=so_far,
            pause_s=pause_s,
        )
    finally:
        await nc.close()
    accepted = [s.intent_id for s in submits if s.intent_id is not None]
    accepted += extra_accepted or []
    verdict = await wait_for_rest(harness.auditor_url, control_path(harness), accepted)
    outcome = Outcome(submits=submits, verdict=verdict, notes={**observed_notes, **(notes or {})})
    retried = Counter(code for s in submits for code in s.retried_codes)
    OBSERVED.append(
        {
            "drill": name,
            "seconds": round(time.monotonic() - began, 1),
            "submitted": len(submits),
            **verdict.summary(),
            "client_retries": {"transport": sum(s.transport_retries for s in submits), **retried},
            **outcome.notes,
        }
    )
    return outcome


async def honest_bodies(harness: Harness, tag: str, count: int) -> list[dict[str, Any]]:
    made = await invoices(harness.sim_endpoints()["nodes"], tag, count)
    return [submit_body(f"{tag}-{i:04d}", invoice, i) for i, invoice in enumerate(made)]


def control_path(harness: Harness) -> Any:
    from pathlib import Path

    return Path(harness.sim_endpoints()["sim_control"])
