"""An agent key's own limits, judged before the policy (ADR 0068). Pure.

The key's limits and the policy's tiers both apply, so the stricter wins: a command the key's
limits refuse is never recorded (``agent_limit_exceeded``, nothing paid), and the policy judges
every command they let through, exactly as before.

- ``amount_msat_max``: the most one command may ask, against its ``amount_msat``.
- ``window_s``/``window_msat_max``: the key's rolling spend, counted as the policy counts a
  caller's (``SpendTracker``): an intent holds its budget (``amount_msat + max_fee_msat``) from
  the policy check (or its dispatch, once approved) until it fails, is cancelled or expires, and
  counts its actual total once settled. A command is refused when its budget would take the
  key over the window's limit.

An intent that waits for an operator holds no budget (as for the policy), so an approval can
take a key over its window: an approval is a person's explicit override.
"""

from __future__ import annotations

from schemas import errors
from schemas.agent_key_messages import AgentKeyLimits
from services.domain.policy.spend import WindowLimit
from services.domain.policy.spend_view import SpendView


def check_key_limits(
    key_id: str,
    limits: AgentKeyLimits,
    *,
    amount_msat: int,
    budget_msat: int,
    spend: SpendView,
    now_ms: int,
) -> None:
    """Refuse with ``AgentLimitExceeded`` (field ``amount_msat``, the limit in ``limit``) a
    command that goes over ``limits``; ``spend`` is booked per key id."""
    if limits.amount_msat_max is not None and amount_msat > limits.amount_msat_max:
        raise errors.AgentLimitExceeded(
            f"amount_msat {amount_msat} is above key {key_id}'s amount_msat_max "
            f"{limits.amount_msat_max}",
            field="amount_msat",
            limit=limits.amount_msat_max,
        )
    if limits.window_s is None or limits.window_msat_max is None:
        return
    (use,) = spend.window_uses(
        key_id, (WindowLimit(limits.window_s * 1000, limits.window_msat_max),), now_ms=now_ms
    )
    if use.used_msat + budget_msat > limits.window_msat_max:
        raise errors.AgentLimitExceeded(
            f"key {key_id} holds or spent {use.used_msat} msat in the last {limits.window_s} s; "
            f"this command's {budget_msat} msat (amount plus max fee) would pass its "
            f"window_msat_max {limits.window_msat_max}",
            field="amount_msat",
            limit=limits.window_msat_max,
        )
