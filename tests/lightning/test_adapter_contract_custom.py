"""The custom-message half of the adapter contract (LSPS0's transport, ADR 0250), one body per
case, run against every adapter: LND (SendCustomMessage/SubscribeCustomMessages), CLN
(sendcustommsg, and the ``custommsg`` hook through Corridor's plugin, each hook call and answer
checked against cln/schemas/hook/custommsg.json at teardown) and the in-process adapter.

The peer is bob, an outside node of the simulated network, read and driven through the
network's own custom-message hub.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.lightning.port import CustomMessage, FailureReason, NodeError
from services.lightning.sim_direct import SimNodeAdapter
from services.lsps import lsps0
from services.lsps.client import LspsClient, LspsUnavailable
from services.lsps.server import LspsDispatcher, Method, serve
from tests.lightning.conftest import CONDITION_TIMEOUT_S, AdapterEnv

PEER = "bob"
LSPS0_TYPE = 37913
# One probe read waits this long before the next probe is sent (see ``live_stream``).
PROBE_WAIT_S = 0.2


@contextlib.asynccontextmanager
async def live_stream(env: AdapterEnv) -> AsyncIterator[asyncio.Queue[CustomMessage]]:
    """The adapter's stream read into a queue, returned once it is live: a subscription has
    no acknowledgement on either node, so bob sends probes until one comes through (what
    the LSPS0 client's first round trip does too)."""
    sim = env.sim
    alice = sim.node(env.node).pubkey
    queue: asyncio.Queue[CustomMessage] = asyncio.Queue()

    async def read() -> None:
        async for message in env.adapter.custom_messages():
            await queue.put(message)

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(CONDITION_TIMEOUT_S):
            while True:
                sim.custom_messages.send(PEER, alice, LSPS0_TYPE, b"probe")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PROBE_WAIT_S):
                        await queue.get()
                        break
        while not queue.empty():  # late copies of the probe
            queue.get_nowait()
        yield queue
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, NodeError):
            await reader


async def test_a_custom_message_reaches_the_peer_with_its_type_and_data(
    adapter_env: AdapterEnv,
) -> None:
    sim = adapter_env.sim
    body = b'{"jsonrpc":"2.0","method":"lsps0.list_protocols","params":{},"id":"a1"}'
    async with sim.custom_messages.watch(PEER) as inbox:
        await adapter_env.adapter.send_custom_message(
            peer_pubkey=sim.node(PEER).pubkey, message_type=LSPS0_TYPE, data=body
        )
        async with asyncio.timeout(CONDITION_TIMEOUT_S):
            got = await inbox.get()
    assert got.sender_pubkey == sim.node(adapter_env.node).pubkey
    assert (got.message_type, got.data) == (LSPS0_TYPE, body)


async def test_messages_from_a_peer_arrive_in_order_with_the_senders_key(
    adapter_env: AdapterEnv,
) -> None:
    sim = adapter_env.sim
    alice = sim.node(adapter_env.node).pubkey
    async with live_stream(adapter_env) as stream:
        bodies = [f'{{"n":{n}}}'.encode() for n in range(5)] + [bytes(range(256)) * 4]
        for body in bodies:
            sim.custom_messages.send(PEER, alice, LSPS0_TYPE, body)
        async with asyncio.timeout(CONDITION_TIMEOUT_S):
            got = [await stream.get() for _ in bodies]
    assert [m.data for m in got] == bodies
    assert {(m.peer_pubkey, m.message_type) for m in got} == {(sim.node(PEER).pubkey, LSPS0_TYPE)}


async def test_a_peer_that_is_not_connected_is_refused(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    sim.faults.set_offline(PEER, offline=True)
    with pytest.raises(NodeError) as refused:
        await adapter_env.adapter.send_custom_message(
            peer_pubkey=sim.node(PEER).pubkey, message_type=LSPS0_TYPE, data=b"{}"
        )
    assert refused.value.reason == FailureReason.NO_ROUTE
    unknown = "02" + "11" * 32
    with pytest.raises(NodeError) as refused:
        await adapter_env.adapter.send_custom_message(
            peer_pubkey=unknown, message_type=LSPS0_TYPE, data=b"{}"
        )
    assert refused.value.reason == FailureReason.NO_ROUTE


async def test_the_largest_message_goes_through_whole(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    body = b"x" * 65533
    async with sim.custom_messages.watch(PEER) as inbox:
        await adapter_env.adapter.send_custom_message(
            peer_pubkey=sim.node(PEER).pubkey, message_type=LSPS0_TYPE, data=body
        )
        async with asyncio.timeout(CONDITION_TIMEOUT_S):
            assert (await inbox.get()).data == body


async def test_an_lsps0_round_trip_through_the_adapter(adapter_env: AdapterEnv) -> None:
    """Our client on the adapter's node asks an LSP (bob, served in process) and gets its
    answers matched by id; an error answer is the LSP's code; a malformed message from the
    LSP stops further requests to it for the session (bLIP-50)."""
    sim = adapter_env.sim
    lsp = SimNodeAdapter(sim, PEER)

    async def get_info(peer: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"asked_by": peer}

    dispatcher = LspsDispatcher({"lsps1.get_info": Method(get_info, frozenset())})
    server = asyncio.create_task(serve(lsp, dispatcher))
    bob = sim.node(PEER).pubkey
    try:
        async with LspsClient(adapter_env.adapter) as client:
            assert await client.ready(bob, timeout_s=CONDITION_TIMEOUT_S) == [1]
            got = await client.call(bob, "lsps1.get_info", {}, timeout_s=CONDITION_TIMEOUT_S)
            assert got == {"asked_by": sim.node(adapter_env.node).pubkey}
            with pytest.raises(lsps0.LspsError) as refused:
                await client.call(bob, "lsps1.nope", {}, timeout_s=CONDITION_TIMEOUT_S)
            assert refused.value.code == lsps0.METHOD_NOT_FOUND
            sim.custom_messages.send(PEER, sim.node(adapter_env.node).pubkey, LSPS0_TYPE, b"{")
            async with asyncio.timeout(CONDITION_TIMEOUT_S):
                while True:
                    try:
                        await client.call(bob, "lsps1.get_info", {}, timeout_s=0.5)
                    except LspsUnavailable:
                        break
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        await lsp.close()


async def test_lnd_refuses_a_type_below_the_custom_range(adapter_env: AdapterEnv) -> None:
    """lnd's lnwire.NewCustom: "msg type: N needs to be >= 32768" (CLN allows any type it
    does not handle itself, so this is lnd's rule, and the in-process adapter's)."""
    if adapter_env.kind.startswith("cln"):
        pytest.skip("CLN sends types below 32768 that it does not handle itself")
    sim = adapter_env.sim
    async with sim.custom_messages.watch(PEER) as inbox:
        with pytest.raises(NodeError) as refused:
            await adapter_env.adapter.send_custom_message(
                peer_pubkey=sim.node(PEER).pubkey, message_type=32767, data=b"{}"
            )
        assert inbox.empty()
    assert "32768" in str(refused.value)


async def test_the_stream_breaks_with_node_error_when_the_node_goes_offline(
    adapter_env: AdapterEnv,
) -> None:
    async with live_stream(adapter_env):
        pass  # the stream was live; now read a fresh one and stop the node under it
    stream = adapter_env.adapter.custom_messages()
    reading = asyncio.ensure_future(anext(stream))
    try:
        await adapter_env.set_offline(True)
        with pytest.raises(NodeError):
            async with asyncio.timeout(2 * CONDITION_TIMEOUT_S):
                await reading
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, NodeError, StopAsyncIteration):
            await reading
        await stream.aclose()
