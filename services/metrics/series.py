"""The series Corridor's own code updates as things happen, in one place (ADR 0153).

Series sampled from the log's read models and from JetStream are produced at scrape time by the
collectors in ``sampled.py`` and ``engine_view.py``; their names are listed there. Every name
starts with ``corridor_``; money is integer msat (``_msat``), durations seconds (``_seconds``).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

# Settlement latency buckets, seconds: a Lightning payment settles in well under a second when a
# route is warm, and a few seconds to a minute when it retries; beyond that it is an exception.
LATENCY_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

INTENT_EVENTS: Final = Counter(
    "corridor_intent_events",
    "Intent events this engine committed, by type (one per transition or annotation).",
    ["type"],
)
SETTLEMENT_LATENCY: Final = Histogram(
    "corridor_settlement_latency_seconds",
    "From an intent received to its settlement, by corridor (observed at commit).",
    ["corridor"],
    buckets=LATENCY_BUCKETS_S,
)
EXECUTOR_PAYMENTS: Final = Counter(
    "corridor_executor_payments",
    "Work orders an executor finished, by the outcome it reported to the engine.",
    ["region", "node", "outcome"],
)
EXECUTOR_INVOICES: Final = Counter(
    "corridor_executor_invoices",
    "Receive invoice reports an executor committed (issued, paid, expired, failed; ADR 0220).",
    ["region", "node", "report"],
)
WEBHOOK_DELIVERIES: Final = Counter(
    "corridor_webhook_deliveries",
    "Webhook delivery attempts, by result (delivered, failed, disabled).",
    ["result"],
)
