"""The CLN adapter's write-ahead open record (ADR 0235), at the instants an executor can die:
before the funding, after the funding but before the outpoint is recorded, and after a refusal.
The simulated chain's funding transactions are the ground truth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pyln.client import LightningRpc

from services.executor.channel_open import ChannelOpenOrder, open_once
from services.lightning.cln import ClnAdapter
from services.lightning.cln_open_record import UNKNOWN_ATTEMPT_BLOCKS, record_key
from services.lightning.port import FailureReason, NodeError
from services.sim.cln_server import ClnNodeServer, start_cln_node_server
from services.sim.network import SimNetwork
from tests.lightning.conftest import (
    ADAPTER_TIMEOUT_S,
    SEED,
    contract_topology,
    request_schema_errors,
    short_socket_dir,
)

INTENT = "chop-one"
AMOUNT_SAT = 800_000


@dataclass
class Env:
    network: SimNetwork
    server: ClnNodeServer
    adapter: ClnAdapter

    def order(self, intent_id: str = INTENT, amount_sat: int = AMOUNT_SAT) -> ChannelOpenOrder:
        return ChannelOpenOrder(
            intent_id=intent_id,
            peer_pubkey=self.network.node("carol").pubkey,
            local_amount_msat=amount_sat * 1000,
            sat_per_vbyte=4,
        )

    def funding_txs(self) -> list[str]:
        return [tx.txid for tx in self.network.chain.txs.values() if tx.kind == "funding"]

    async def rpc(self, method: str, payload: dict[str, object]) -> dict[str, object]:
        rpc = LightningRpc(str(self.server.socket_path))
        result: dict[str, object] = await asyncio.to_thread(rpc.call, method, payload)
        return result

    async def record(self) -> dict[str, object]:
        listed = await self.rpc("listdatastore", {"key": record_key(f"corridor:open:{INTENT}")})
        (entry,) = listed["datastore"]  # type: ignore[misc]
        return json.loads(entry["string"])  # type: ignore[no-any-return]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    network = SimNetwork.from_topology(contract_topology("cln"), seed=SEED)
    async with short_socket_dir() as sockets:
        server = await start_cln_node_server(network, "alice", socket_path=sockets / "a.sock")
        adapter = ClnAdapter(server.socket_path, timeout_s=ADAPTER_TIMEOUT_S)
        try:
            yield Env(network, server, adapter)
            assert not request_schema_errors(server), request_schema_errors(server)
        finally:
            await adapter.close()
            await server.stop()
            await network.aclose()


async def test_the_record_is_written_before_the_funding_and_names_its_outpoint(env: Env) -> None:
    opened = await open_once(env.adapter, env.order())
    record = await env.record()
    assert (record["txid"], record["outnum"]) == (opened.funding_txid, 0)
    assert record["amount_sat"] == AMOUNT_SAT
    methods = [method for method, _ in env.server.requests]
    assert methods.index("datastore") < methods.index("fundchannel")
    (pending,) = [p for p in await env.adapter.pending_channels() if p.state == "opening"]
    assert pending.memo == f"corridor:open:{INTENT}"


async def test_killed_before_the_funding_opens_nothing_until_the_attempt_is_stale(
    env: Env,
) -> None:
    # The record as an executor leaves it when killed between the record and fundchannel.
    tip = env.network.chain.height
    attempt = {"memo": f"corridor:open:{INTENT}", "peer": env.order().peer_pubkey,
               "amount_sat": AMOUNT_SAT, "height": tip}  # fmt: skip
    await env.rpc(
        "datastore",
        {"key": record_key(attempt["memo"]), "string": json.dumps(attempt), "mode": "must-create"},
    )
    with pytest.raises(NodeError) as info:
        await open_once(env.adapter, env.order())
    assert info.value.reason is FailureReason.UNKNOWN
    assert env.funding_txs() == []
    env.network.mine(UNKNOWN_ATTEMPT_BLOCKS)
    opened = await open_once(env.adapter, env.order())
    assert env.funding_txs() == [opened.funding_txid]
    assert (await env.record())["txid"] == opened.funding_txid


async def test_killed_before_the_outpoint_is_recorded_finds_the_funding(env: Env) -> None:
    # Another open to the same peer, without a memo and of another size: never claimed.
    await env.adapter.open_channel(
        peer_pubkey=env.order().peer_pubkey, local_amount_msat=300_000_000, sat_per_vbyte=4
    )
    env.network.mine(1)
    store = env.server._methods["datastore"]
    writes = 0

    async def lose_the_outpoint_write(params: dict[str, Any]) -> Any:
        nonlocal writes
        writes += 1
        if writes == 2:  # the write after fundchannel: the process died before it
            raise RuntimeError("killed")
        return await store(params)

    env.server._methods["datastore"] = lose_the_outpoint_write
    opened = await open_once(env.adapter, env.order())  # funded; the outpoint write failed
    env.server._methods["datastore"] = store
    assert "txid" not in await env.record()
    assert len(env.funding_txs()) == 2
    again = await open_once(env.adapter, env.order())
    assert again.funding_txid == opened.funding_txid  # resolved from the node's channels
    assert (await env.record())["txid"] == opened.funding_txid
    assert len(env.funding_txs()) == 2  # ground truth: nothing opened twice
    found = await open_once(env.adapter, env.order())
    assert (found.how, found.funding_txid) == ("found", opened.funding_txid)


async def test_a_refused_open_may_be_tried_again_at_once(env: Env) -> None:
    env.server.fail_next("fundchannel", 301, "Cannot afford funding transaction")
    with pytest.raises(NodeError) as info:
        await open_once(env.adapter, env.order())
    assert info.value.reason is FailureReason.INSUFFICIENT_LIQUIDITY
    assert (await env.record())["refused"] is True
    opened = await open_once(env.adapter, env.order())
    assert env.funding_txs() == [opened.funding_txid]
