"""The run's ratios to the machine's raw speed, its latency floor, and the issue's targets."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "settled_intents_per_s": 1000,
    "e2e_append_vs_batched_baseline": 0.10,
    "latency_p95_ms_at_half_saturation": 25,
    "replay_events_per_s": 50_000,
    "append_batched_events_per_s": 20_000,
    "engine_peak_rss_mib": 300,
}

# The serial operations on every intent's path from submit to the settled event: the submit
# and the outcome each cross NATS to the engine, the work order and the settled event each
# cross JetStream (half a round trip each way, so two round trips in all), two commits (the
# intake's and the outcome's), two JetStream publishes (work order, settled event), a payment.
LATENCY_FLOOR_PATH = {"nats_round_trip": 2, "pg_commit": 2, "js_publish": 2, "payment": 1}


def _latency_floor(result: dict[str, Any]) -> dict[str, Any] | None:
    """The sum of the raw parts' one-at-a-time latencies along an intent's path: no Corridor
    code, no queueing. (A sum of p95s is a rough bound, not the p95 of the sum.)"""
    if "simulated_network" not in result:
        return None
    raw = result["baselines"]["one_at_a_time_latency_ms"]
    payment = result["simulated_network"]["one_at_a_time_latency_ms"]
    floor: dict[str, Any] = {"path": dict(LATENCY_FLOOR_PATH)}
    for pacing in ("back_to_back", "paced"):
        parts = {**raw[pacing], "payment": payment[pacing]}
        floor[pacing] = {
            q: round(sum(parts[name][q] * n for name, n in LATENCY_FLOOR_PATH.items()), 1)
            for q in ("p50", "p95")
        }
    return floor


def ratios_and_targets(result: dict[str, Any]) -> None:
    base, store = result["baselines"], result["event_store"]
    e2e = result.get("end_to_end", {})
    result["latency_floor_ms"] = _latency_floor(result)

    def median(figure: dict[str, Any]) -> float:
        return float(figure["median"])

    result["ratios"] = {
        "append_single_vs_pg_single": round(
            median(store["append_single_events_per_s"]) / median(base["pg_single_rows_per_s"]), 3
        ),
        "append_batched_vs_pg_batched": round(
            median(store["append_batched_events_per_s"]) / median(base["pg_batched_rows_per_s"]), 3
        ),
        "e2e_events_vs_pg_batched": round(
            median(e2e["events_appended_per_s"]) / median(base["pg_batched_rows_per_s"]), 3
        ) if e2e else None,
        # Every event is published once to JetStream, in the relay's atomic batches.
        "e2e_events_vs_js_atomic_batched": round(
            median(e2e["events_appended_per_s"]) / median(base["js_atomic_batched_msgs_per_s"]), 3
        ) if e2e else None,
        "e2e_intents_vs_js_sync": round(
            median(e2e["settled_intents_per_s"]) / median(base["js_sync_msgs_per_s"]), 3
        ) if e2e else None,
        "e2e_intents_vs_simulated_network_payments": round(
            median(e2e["settled_intents_per_s"])
            / median(result["simulated_network"]["payments_per_s"]), 3
        ) if e2e else None,
    }  # fmt: skip
    values = {
        "settled_intents_per_s": median(e2e["settled_intents_per_s"]) if e2e else None,
        "e2e_append_vs_batched_baseline": result["ratios"]["e2e_events_vs_pg_batched"],
        "latency_p95_ms_at_half_saturation": result.get("latency_at_half_saturation", {}).get(
            "p95_ms"
        ),
        "replay_events_per_s": median(store["replay_events_per_s"]),
        "append_batched_events_per_s": median(store["append_batched_events_per_s"]),
        "engine_peak_rss_mib": result.get("memory", {}).get("engine_peak_rss_mib"),
    }
    lower_is_better = {"latency_p95_ms_at_half_saturation", "engine_peak_rss_mib"}
    result["targets"] = {
        name: {
            "target": target,
            "value": values[name],
            "met": values[name] is not None
            and (values[name] <= target if name in lower_is_better else values[name] >= target),
        }
        for name, target in TARGETS.items()
    }
