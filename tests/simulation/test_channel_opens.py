"""Channel opens in the whole-engine simulation (ADR 0283): operator opens under the world's
faults, one funding transaction per operation on the simulated chain; an executor that no
longer asks the node for its open's memo is caught funding twice."""

from __future__ import annotations

from typing import Any

import pytest

from services.executor import channel_open
from services.executor.channel_worker import is_channel_order
from services.executor.worker import Executor
from services.simulation import channel_opens as chop
from services.simulation.world import run_world

STEPS = 20


@pytest.mark.parametrize("broken", [False, True], ids=["looked_up", "not_looked_up"])
def test_a_channel_open_is_funded_once_unless_the_node_is_not_asked(
    monkeypatch: pytest.MonkeyPatch, broken: bool
) -> None:
    handle = Executor._handle

    async def twice(self: Executor, msg: Any) -> None:
        # A redelivery after the first delivery's work (an ack lost): handled again.
        await handle(self, msg)
        if is_channel_order(msg.data):
            await handle(self, msg)

    monkeypatch.setattr(Executor, "_handle", twice)
    if broken:

        async def forgetful(node: Any, intent_id: str) -> None:
            return None

        monkeypatch.setattr(channel_open, "find_open", forgetful)
    result = run_world(4, steps=STEPS, channel_opens=True)
    assert result.channel_opens > 2
    if broken:
        assert chop.CHANNEL_OPEN_FUNDED_ONCE in {v.invariant for v in result.violations}
    else:
        assert result.violations == []
        assert 0 < result.channel_opens_completed <= result.channel_opens


def test_an_open_completes_when_the_other_engine_recorded_its_broadcast() -> None:
    """Two engines on one log: the executor's ``broadcast`` report is committed by one, its
    ``final`` report reaches the other, which had the operation cached from before. It must
    judge the report on the log, not refuse it for ever as ``not_broadcast_yet``."""
    result = run_world(4, steps=STEPS, engines=2, channel_opens=True)
    assert result.violations == []
    assert result.channel_opens_completed == result.channel_opens > 0


def test_an_open_whose_order_is_lost_with_the_dispatch_stream_still_completes() -> None:
    """Seed 66: CORRIDOR_DISPATCH is lost at step 30 while eu-lnd's executor holds an open's
    order (broadcast, waiting for confirmations); it crashes at step 31. The channel opens on
    the chain; the sweeper re-issues the logged order (ADR 0280), the restarted executor finds
    the channel by its memo and reports it opened, funding nothing twice."""
    result = run_world(66, channel_opens=True)
    assert result.violations == []
