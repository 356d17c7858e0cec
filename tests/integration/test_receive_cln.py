"""A receive end to end on a Core Lightning node (ADR 0220/0221): the executor drives the
simulated CLN through the real CLN adapter (JSON-RPC on a unix socket: ``invoice`` with a
preimage, ``listinvoices``, ``waitanyinvoice``), an outside lnd node pays, the receive ends
``paid`` once, and reconciliation finds nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from services.bootstrap import Engine, bootstrap
from services.eventstore.postgres import PostgresEventStore
from services.executor import Executor
from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
from services.executor.nodes import adapter_for
from services.settings import Settings
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
from services.sim.cln_server import start_cln_node_server
from services.sim.network import SimNetwork
from services.sim.topology import default_topology
from tests.conftest import wait_for
from tests.integration.test_api import request
from tests.integration.test_executor import FAST, SEED
from tests.integration.test_receive_e2e import AMOUNT_MSAT, MAX_FEE_MSAT, PAYER, _wait_state
from tests.integration.test_receives import RECEIVE, receive

NODE = "us-cln"


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    # Region us receives on its CLN node first here.
    settings = Settings(
        relay_poll_s=0.2, state_dir=tmp_path, corridors={"us-eu": ["us/us-cln", "eu/eu-lnd"]}
    )
    running = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await running.start()
    await wait_for(running.relay.leader.is_set, what="the relay to lead")
    yield running
    await running.stop()


async def test_a_receive_on_a_cln_node_is_paid_and_credited_once(
    engine: Engine, nc: Client, nats_url: str, tmp_path: Path, store: PostgresEventStore
) -> None:
    network = SimNetwork.from_topology(default_topology(), seed=SEED)
    server = await start_cln_node_server(network, NODE, socket_path=tmp_path / "cln.sock")
    adapter = adapter_for(server.endpoint)
    executor = Executor(
        nats_url=nats_url, region="us", node_name=NODE, node=adapter, executor_id="us-cln-1",
        secret=load_or_create_secret(tmp_path / SECRET_FILE_NAME), limits=FAST,
        verifier=FileKeyring(keys_dir(tmp_path) / PUBLIC_KEYS_FILE),
    )  # fmt: skip
    task = asyncio.create_task(executor.run())
    try:
        await wait_for(executor.ready.is_set, what="the executor to start")
        created = await request(nc, RECEIVE.format(caller="alice"), receive("cln-1", AMOUNT_MSAT))
        intent_id = created["intent_id"]
        await _wait_state(engine, intent_id, "issued")
        issued = next(e for e in await store.read_stream(intent_id) if e.type == "InvoiceIssued")
        assert issued.payload["node"] == NODE
        sent = await network.send_payment(
            PAYER, payment_request=issued.payload["payment_request"],
            max_fee_msat=MAX_FEE_MSAT, timeout_s=5.0,
        )  # fmt: skip
        final = await network.wait_payment(PAYER, sent.payment_hash, timeout_s=15)
        assert final.status == "succeeded", final
        await _wait_state(engine, intent_id, "paid")
        types = [e.type for e in await store.read_stream(intent_id)]
        assert types.count("InvoicePaid") == 1
        stored = network.lookup_invoice(NODE, issued.payload["payment_hash"])
        assert stored is not None and stored.amount_received_msat == AMOUNT_MSAT
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await adapter.close()
        await server.stop()
        await network.aclose()
