"""How many policy-rejected submits each caller may make (ADR 0079).

A submit the policy rejects is still recorded: ``IntentReceived``, ``IntentPolicyChecked`` and
``IntentRejected``, three events, the refusal's audit trail. Caller ids come from credentials
now (ADR 0061), so their number is bounded by the registry; what one caller can make the log
hold is bounded here: a token bucket per caller refills ``per_minute`` rejections a minute,
and a new submit from a caller whose bucket is empty is refused with ``rate_limited`` before
it is decided, writing nothing. Submits the policy accepts never use the bucket.

Integer arithmetic in milli-tokens; memory bounded by ``callers_max`` (least recently charged
caller forgotten first, which only ever gives it a full bucket again).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

# Without a credential registry (tests, old setups) caller ids are unbounded: this many
# buckets at most, about 100 bytes each.
CALLERS_MAX: Final = 100_000
_MILLI: Final = 1000
_MINUTE_MS: Final = 60_000


class RejectionBudget:
    def __init__(self, per_minute: int, *, callers_max: int = CALLERS_MAX) -> None:
        assert per_minute >= 1 and callers_max >= 1
        self._capacity = per_minute * _MILLI
        self._per_minute = per_minute
        self._callers_max = callers_max
        # caller id -> (milli-tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def _tokens(self, caller_id: str, now_ms: int) -> int:
        tokens, at_ms = self._buckets.get(caller_id, (self._capacity, now_ms))
        refill = max(0, now_ms - at_ms) * self._per_minute * _MILLI // _MINUTE_MS
        return min(self._capacity, tokens + refill)

    def allows(self, caller_id: str, now_ms: int) -> bool:
        """Whether ``caller_id`` may have one more submit decided (it may be rejected)."""
        return self._tokens(caller_id, now_ms) >= _MILLI

    def charge(self, caller_id: str, now_ms: int) -> None:
        """One policy rejection of ``caller_id`` was decided."""
        tokens = max(0, self._tokens(caller_id, now_ms) - _MILLI)
        self._buckets[caller_id] = (tokens, now_ms)
        self._buckets.move_to_end(caller_id)
        while len(self._buckets) > self._callers_max:
            self._buckets.popitem(last=False)
