"""What policy-rejected submits can make the log hold (ADR 0079; issue 13, finding 7).

Each rejected submit records three events; past the caller's budget a new submit is refused as
``rate_limited`` before it is decided, writing nothing, while other callers go on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from services.bootstrap import Engine, bootstrap
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_api import SUBMIT, request

TOO_MUCH_MSAT = 2_000_000_000  # above the default policy's payment_max_msat


class StoppedClock:
    def now_ms(self) -> int:
        return 1_800_000_000_000


@pytest.fixture
async def strict_engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await bootstrap(
        Settings(relay_poll_s=0.2, state_dir=tmp_path, policy_rejections_per_minute_max=3),
        nats_url=nats_url,
        database_url=database_url,
        clock=StoppedClock(),
    )
    await engine.start()
    await wait_for(engine.relay.leader.is_set, what="the relay to lead")
    yield engine
    await engine.stop()


async def test_rejected_submits_cost_three_events_each_up_to_the_callers_budget(
    strict_engine: Engine, nc: Client
) -> None:
    def rejected(key: str) -> dict[str, object]:
        return submit(
            key=key, caller_id="mallory", amount_msat=TOO_MUCH_MSAT, max_fee_msat=10_000_000
        )

    for i in range(3):
        reply = await request(nc, SUBMIT.format(caller="mallory"), rejected(f"m{i}"))
        assert reply["ok"] and reply["state"] == "rejected", reply
    head = await strict_engine.store.head_position()
    assert head == 9  # three events per rejected submit
    for i in range(3, 6):
        refused = await request(nc, SUBMIT.format(caller="mallory"), rejected(f"m{i}"))
        assert refused["ok"] is False and refused["error"]["code"] == "rate_limited", refused
    assert await strict_engine.store.head_position() == head  # nothing written
    # A duplicate of an answered submit is still answered, and another caller is unaffected.
    again = await request(nc, SUBMIT.format(caller="mallory"), rejected("m0"))
    assert again["ok"] and again["duplicate"] is True
    alice = await request(nc, SUBMIT.format(caller="alice"), submit(key="a0"))
    assert alice["ok"] and alice["state"] == "dispatched", alice
