"""An executor killed between opening a channel and reporting it does not open a second one:
the redelivery finds the first open on the node's own record by its memo (ADR 0233; on CLN the
record in its datastore, ADR 0235). Runs through the real LND and CLN adapters against the
simulated nodes, and through the in-process adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.executor.channel_open import ChannelOpenOrder, open_once
from services.lightning.port import FailureReason, NodeError
from services.sim.channel_ops import FUNDING_CONFIRMATIONS
from tests.lightning.conftest import ENV_FACTORIES, AdapterEnv


@pytest.fixture(params=["lnd", "cln-xpay", "sim-direct"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AdapterEnv]:
    async with ENV_FACTORIES[request.param](tmp_path) as adapter_env:
        yield adapter_env


def order(env: AdapterEnv, intent_id: str = "in_channel_1") -> ChannelOpenOrder:
    return ChannelOpenOrder(
        intent_id=intent_id,
        peer_pubkey=env.sim.node("carol").pubkey,
        local_amount_msat=800_000_000,
        sat_per_vbyte=4,
    )


def funding_txs(env: AdapterEnv) -> list[str]:
    return [tx.txid for tx in env.sim.chain.txs.values() if tx.kind == "funding"]


class Killed(Exception):
    """The executor process dies after the open, before its report is committed."""


async def test_redelivery_after_a_crash_finds_the_open_and_opens_nothing(env: AdapterEnv) -> None:
    async def deliver_and_die() -> None:
        await open_once(env.adapter, order(env))
        raise Killed

    with pytest.raises(Killed):
        await deliver_and_die()
    (first,) = funding_txs(env)
    again = await open_once(env.adapter, order(env))
    assert (again.how, again.state, again.funding_txid) == ("found", "opening", first)
    env.sim.mine(FUNDING_CONFIRMATIONS)
    later = await open_once(env.adapter, order(env))
    assert (later.how, later.state, later.funding_txid) == ("found", "open", first)
    assert funding_txs(env) == [first]  # ground truth: one funding transaction, ever
    # Another intent to the same peer is another channel.
    other = await open_once(env.adapter, order(env, "in_channel_2"))
    assert other.how == "opened" and len(funding_txs(env)) == 2


async def test_a_node_that_cannot_be_asked_opens_nothing(env: AdapterEnv) -> None:
    await env.set_offline(True)
    with pytest.raises(NodeError) as info:
        await open_once(env.adapter, order(env))
    assert info.value.reason is FailureReason.NODE_UNAVAILABLE
    await env.set_offline(False)
    assert funding_txs(env) == []
    assert (await open_once(env.adapter, order(env))).how == "opened"
