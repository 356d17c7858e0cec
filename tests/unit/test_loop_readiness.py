"""A loop's readiness (services/metrics/freshness.py): ready while its last round is recent,
not before the first round, not once rounds stop finishing."""

from __future__ import annotations

import time

from services.metrics.freshness import finished_within


def test_not_ready_before_the_first_round_ready_after_and_stale_when_it_stops() -> None:
    last: list[float | None] = [None]
    ready = finished_within(lambda: last[0], max_age_s=30, what="projection step")
    assert ready() == "no projection step finished yet"
    last[0] = time.monotonic()
    assert ready() is None
    last[0] = time.monotonic() - 31  # the loop wedged half a minute ago
    reason = ready()
    assert reason is not None and reason.startswith("last projection step 3")
