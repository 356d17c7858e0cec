"""Real restarts of PostgreSQL and nats-server under load (issue 13, finding 2).

Each test holds payments in flight at the simulated merchant, takes a server away, lets the
payments finish while it is away (their outcomes meet the outage), brings it back, and then
checks the simulated network's own ledger: every intent settled, every payment hash paid once.

PostgreSQL is restarted in immediate mode (SIGQUIT: a crash, then recovery). It comes back as
a standby with hot standby off, so it answers every connection with SQLSTATE 57P03 ("the
database system is starting up" / "not accepting connections": ``CannotConnectNowError``) for
exactly as long as the test needs, and is then promoted, as recovery ends on its own after a
crash. The window is a condition the test waits on, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from nats.aio.client import Client

from services.bootstrap import Engine
from services.devstack.nats import NatsServer
from services.devstack.postgres import PostgresServer, provision_corridor
from tests.conftest import session_registry, wait_for
from tests.factories import submit
from tests.integration.test_executor import (
    AMOUNT_MSAT,
    MAX_FEE_MSAT,
    MERCHANT,
    SimStack,
    signing_engine,
    sim_stack,
)
from tests.nats_creds import connect_as

HELD = 20  # payments in flight when the server goes away
LATER = 10  # intents submitted while it is away, or right after
SUBMIT_SUBJECT = "corridor.api.v1.intents.submit.alice"
SETTLE_TIMEOUT_S = 90.0


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    # Durable commits: an immediate shutdown is a crash, and with synchronous_commit off it
    # loses commits PostgreSQL has already acknowledged (the harness's cluster runs so).
    server = PostgresServer(tmp_path / "pg", fsync=True, keep_data=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_nats(tmp_path: Path, identity_home: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", registry=session_registry(identity_home))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Load:
    """Intents paying the simulated merchant, submitted as a careful client does: a refusal
    that says ``unavailable`` (or no answer) is sent again, with the same idempotency key."""

    def __init__(self, sim: SimStack, nats_url: str) -> None:
        self.sim = sim
        self.nats_url = nats_url
        self.hashes: dict[str, str] = {}  # intent id -> payment hash
        self.refusals: list[str] = []  # codes of the refusals the client retried

    async def submit(self, nc: Client, label: str) -> None:
        invoice = self.sim.network.create_invoice(MERCHANT, AMOUNT_MSAT, label, 3600)
        assert invoice.bolt11 is not None
        body = submit(
            key=label,
            amount_msat=AMOUNT_MSAT,
            max_fee_msat=MAX_FEE_MSAT,
            payment_request=invoice.bolt11,
            destination=None,
        )
        reply = await _until_committed(nc, json.dumps(body).encode(), self.refusals)
        self.hashes[reply["intent_id"]] = invoice.payment_hash

    def succeeded_at_node(self) -> int:
        wanted = set(self.hashes.values())
        return sum(
            1
            for p in self.sim.network.payments()
            if p.payment_hash in wanted and p.status == "succeeded"
        )

    async def unsettled(self, engine: Engine) -> dict[str, str]:
        states = {}
        for intent_id in self.hashes:
            status = await engine.processor.status(intent_id)
            states[intent_id] = getattr(status, "state", None) or status.error.code  # type: ignore[union-attr]
        return {i: state for i, state in states.items() if state != "settled"}

    async def wait_settled(self, engine: Engine) -> None:
        async def settled() -> bool:
            return not await self.unsettled(engine)

        try:
            await wait_for(settled, timeout_s=SETTLE_TIMEOUT_S, what="every intent to settle")
        except AssertionError:
            raise AssertionError(f"not settled: {await self.unsettled(engine)}") from None

    def check_ledger(self) -> None:
        """The network's own record: each intent's hash paid exactly once, nothing else paid."""
        payments = self.sim.network.payments()
        for payment_hash in self.hashes.values():
            paid = [p.status for p in payments if p.payment_hash == payment_hash]
            assert paid == ["succeeded"], (payment_hash, paid)
        assert {p.payment_hash for p in payments} == set(self.hashes.values())


async def _until_committed(nc: Client, body: bytes, refusals: list[str]) -> dict[str, Any]:
    """Sent again, with the same idempotency key, until committed: safe whatever the refusal
    said (the tests assert which refusals were seen)."""
    while True:
        try:
            msg = await nc.request(SUBMIT_SUBJECT, body, timeout=5)
        except Exception:  # reconnecting, no responders, timeout: ask again
            await asyncio.sleep(0.2)
            continue
        reply: dict[str, Any] = json.loads(msg.data)
        if reply["ok"]:
            return reply
        refusals.append(reply["error"]["code"])
        await asyncio.sleep(0.2)  # back-off of a polite client, not synchronisation


@contextlib.asynccontextmanager
async def _running(
    tmp_path: Path, nats_url: str, database_url: str
) -> AsyncIterator[tuple[Engine, Load]]:
    async with (
        sim_stack(tmp_path, nats_url) as sim,
        signing_engine(nats_url, database_url, tmp_path) as engine,
    ):
        sim.start("us", "us-lnd", "us-1")
        sim.start("us", "us-lnd", "us-2")
        yield engine, Load(sim, nats_url)


async def _hold_payments(load: Load, nc: Client) -> None:
    load.sim.network.faults.drop_resolution(node=MERCHANT, count=HELD)
    await asyncio.gather(*(load.submit(nc, f"held-{i}") for i in range(HELD)))
    await wait_for(
        lambda: len(load.sim.network.payments()) == HELD,
        timeout_s=30,
        what="every held payment to be in flight",
    )


def _recover_as_standby(server: PostgresServer) -> Path:
    """Crash the server (immediate mode) and start it again in recovery, refusing connections
    with 57P03 until ``_promote``.

    Started here with the same command line, not with ``server.start()``. Once the simulated
    nodes' gRPC servers run in this process, a ``fork()`` runs gRPC's fork handlers in the
    child, which abort; ``subprocess`` forks (rather than vforks) whenever it changes the
    user itself, so the switch to the cluster's user is left to ``setpriv``."""
    assert server.proc is not None
    argv = [str(arg) for arg in server.proc.args]  # type: ignore[union-attr]
    server.proc.send_signal(signal.SIGQUIT)  # PostgreSQL's immediate shutdown
    server.proc.wait(timeout=30)
    pgdata = server.pgdata()
    for name, text in (("standby.signal", ""), ("postgresql.auto.conf", "hot_standby = off\n")):
        path = pgdata / name
        with path.open("a") as out:
            out.write(text)
        if server.user is not None:
            pw = pwd.getpwnam(server.user)
            os.chown(path, pw.pw_uid, pw.pw_gid)
    if server.user is not None:
        pw = pwd.getpwnam(server.user)
        argv = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                "--", *argv]  # fmt: skip
    with (pgdata.parent / "postgres.log").open("ab") as log:
        server.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd="/",
        )  # fmt: skip
    return pgdata


def _promote(server: PostgresServer, pgdata: Path) -> None:
    """What ``pg_ctl promote`` does: the signal file, then SIGUSR1 to the postmaster."""
    assert server.proc is not None
    (pgdata / "promote").write_text("")
    server.proc.send_signal(signal.SIGUSR1)


async def _refuses_while_starting_up(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except asyncpg.CannotConnectNowError:
        return True
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return False


async def test_an_immediate_postgres_restart_strands_nothing(
    tmp_path: Path, nats_url: str, postgres: PostgresServer
) -> None:
    urls = await asyncio.to_thread(provision_corridor, postgres)
    async with _running(tmp_path, nats_url, urls.engine) as (engine, load):
        nc = await connect_as(nats_url)
        try:
            await _hold_payments(load, nc)
            with structlog.testing.capture_logs() as logged:
                pgdata = _recover_as_standby(postgres)
                await wait_for(
                    lambda: _refuses_while_starting_up(postgres.url),
                    timeout_s=30,
                    what="PostgreSQL to refuse connections while it recovers",
                )
                load.sim.network.faults.release_dropped()
                later = asyncio.gather(*(load.submit(nc, f"later-{i}") for i in range(LATER)))
                await wait_for(
                    lambda: load.succeeded_at_node() >= HELD,
                    timeout_s=30,
                    what="the held payments to succeed at the node",
                )
                # Every executor's outcome has met the outage at least once.
                await wait_for(
                    lambda: _outcomes_refused(logged) >= 1,
                    timeout_s=30,
                    what="the engine to refuse outcomes while PostgreSQL recovers",
                )
                _promote(postgres, pgdata)
                await wait_for(
                    lambda: _accepts(postgres.url), timeout_s=60, what="PostgreSQL to be promoted"
                )
                await later
                await load.wait_settled(engine)
            seen = {e.get("error") for e in logged}
            assert "CannotConnectNowError" in seen, sorted(str(s) for s in seen)
            assert not [e for e in logged if e["event"] in ("batch_crashed", "work_order_refused")]
            load.check_ledger()
            assert set(load.refusals) <= {"unavailable"}, load.refusals
        finally:
            await nc.close()


async def _accepts(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _outcomes_refused(logged: list[MutableMapping[str, Any]]) -> int:
    return sum(
        1
        for e in logged
        if e["event"] in ("engine_request_retry", "work_order_refused", "work_order_held")
    )


async def test_a_nats_server_restart_strands_nothing(
    tmp_path: Path, database_url: str, own_nats: NatsServer
) -> None:
    async with _running(tmp_path, own_nats.url, database_url) as (engine, load):
        nc = await connect_as(own_nats.url)
        try:
            await _hold_payments(load, nc)
            with structlog.testing.capture_logs() as logged:
                await asyncio.to_thread(own_nats.stop)
                load.sim.network.faults.release_dropped()
                await wait_for(
                    lambda: load.succeeded_at_node() >= HELD,
                    timeout_s=30,
                    what="the held payments to succeed at the node while NATS is away",
                )
                await asyncio.to_thread(own_nats.start)
                await asyncio.gather(*(load.submit(nc, f"later-{i}") for i in range(LATER)))
                await load.wait_settled(engine)
            assert not [e for e in logged if e["event"] in ("batch_crashed", "work_order_refused")]
            load.check_ledger()
            assert set(load.refusals) <= {"unavailable"}, load.refusals
        finally:
            await nc.close()
