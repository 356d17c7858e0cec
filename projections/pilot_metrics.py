"""Pilot metrics: what a pilot customer asks after a week of payments.

A pure fold over recorded events (any order of streams, each stream in version order), so the
figures can be rebuilt from ``corridor replay`` output or straight from the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from projections.reconciliation_time import ReconciliationTimes
from schemas.upcasting import upcast_record
from services.domain.intent.transitions import STATUS_AFTER

# Value bands for fee rates, by amount in msat (upper bounds inclusive).
VALUE_BANDS_MSAT: tuple[tuple[str, int | None], ...] = (
    ("up_to_1k_sat", 1_000_000),
    ("1k_to_10k_sat", 10_000_000),
    ("10k_to_100k_sat", 100_000_000),
    ("above_100k_sat", None),
)


def band_of(amount_msat: int) -> str:
    for name, upper in VALUE_BANDS_MSAT:
        if upper is None or amount_msat <= upper:
            return name
    raise AssertionError("unreachable")


@dataclass
class _Intent:
    amount_msat: int = 0
    received_at_ms: int = 0
    state: str = "received"
    tier: str | None = None
    attempt_failures: int = 0
    fee_msat: int = 0
    settled_at_ms: int | None = None


@dataclass
class PilotMetrics:
    intents: dict[str, _Intent] = field(default_factory=dict)
    dispatches: int = 0
    attempt_failures: int = 0
    operator_approved: int = 0
    operator_rejected: int = 0
    anomalies: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    reconciliation: ReconciliationTimes = field(default_factory=ReconciliationTimes)

    def apply(self, recorded: dict[str, Any]) -> None:
        event = upcast_record(recorded)  # any stored version, read in today's shape
        kind, data, stream = event["type"], event["data"], event["stream_id"]
        self.reconciliation.apply(event)
        if kind == "IntentReceived":
            self.intents[stream] = _Intent(
                amount_msat=data["amount_msat"], received_at_ms=data["received_at_ms"]
            )
            return
        intent = self.intents.get(stream)
        if intent is None:
            return  # a stream whose start is outside the replayed range
        if kind in STATUS_AFTER:  # annotations keep the status as it is
            intent.state = str(STATUS_AFTER[kind])
        match kind:
            case "IntentPolicyChecked":
                intent.tier = data["tier"]
            case "IntentDispatched":
                self.dispatches += 1
            case "PaymentAttemptFailed" | "PaymentInDoubt":
                self.attempt_failures += 1
                intent.attempt_failures += 1
            case "IntentSettled":
                intent.fee_msat = data["fee_msat"]
                intent.settled_at_ms = event["recorded_at_ms"]
            case "IntentApproved":
                self.operator_approved += 1
            case "IntentRejected" if data.get("by") == "operator":
                self.operator_rejected += 1
            case "IntentFailed":
                self.failure_reasons[str(data.get("reason"))] += 1
            case "OutcomeIgnored" if data.get("anomaly"):
                self.anomalies += 1

    def report(self) -> dict[str, Any]:
        intents = list(self.intents.values())
        settled = [i for i in intents if i.state == "settled"]
        latencies = sorted(
            i.settled_at_ms - i.received_at_ms for i in settled if i.settled_at_ms is not None
        )
        fee_by_band: dict[str, list[int]] = {name: [0, 0] for name, _ in VALUE_BANDS_MSAT}
        for i in settled:
            totals = fee_by_band[band_of(i.amount_msat)]
            totals[0] += i.fee_msat
            totals[1] += i.amount_msat
        recovered = [i for i in intents if i.attempt_failures > 0]
        return {
            "intents": len(intents),
            "by_state": dict(sorted(Counter(i.state for i in intents).items())),
            "settled": len(settled),
            "settled_msat": sum(i.amount_msat for i in settled),
            "fees_msat": sum(i.fee_msat for i in settled),
            "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
            "fee_rate_ppm_by_band": {
                name: (fee * 1_000_000 // amount if amount else None)
                for name, (fee, amount) in fee_by_band.items()
            },
            "route_failure_ratio": _ratio(self.attempt_failures, self.dispatches),
            "auto_recovery_rate": _ratio(
                sum(1 for i in recovered if i.state == "settled"), len(recovered)
            ),
            "interventions_by_tier": {
                **{
                    t: sum(1 for i in intents if i.tier == t)
                    for t in ("auto", "review", "approval")
                },
                "operator_approved": self.operator_approved,
                "operator_rejected": self.operator_rejected,
            },
            "failures_by_reason": dict(sorted(self.failure_reasons.items())),
            "anomalies": self.anomalies,
            # Found -> resolved per reconciliation item (ADR 0151), the fifth pilot metric.
            "reconciliation_time_ms": self.reconciliation.report(),
        }


def _percentile(sorted_values: list[int], pct: int) -> int | None:
    if not sorted_values:
        return None
    index = max(0, -(-len(sorted_values) * pct // 100) - 1)  # nearest-rank
    return sorted_values[index]


def _ratio(numerator: int, denominator: int) -> float | None:
    # Ratios of counts, not money: a float is fine here.
    return round(numerator / denominator, 4) if denominator else None


def build(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    metrics = PilotMetrics()
    for event in events:
        metrics.apply(event)
    return metrics.report()
