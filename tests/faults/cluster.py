"""The scale-out drill's stack (ADR 0196): the drills' ``Harness`` on a 3-node nats-server
cluster with R3 streams, with three engine processes (each runs a relay: one leads, two stand
by on the relay lease) and two executors per simulated node.

Each engine is ``tests.engine_process`` with its own state directory and the same signing key
(the executors trust one key, as an operator deploys one to every engine host), and names
itself to PostgreSQL (``application_name``), so the drill finds the relay leader from the
database's own view of who holds the relay lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

from services.bus import subjects
from services.bus.jetstream import connect
from services.devstack import DevStack
from services.devstack.process import spawn
from services.eventstore.port import RELAY_LEASE
from services.eventstore.postgres import ADVISORY_LOCK_KEYS
from services.identity import nats_auth
from services.identity.registry import registry_path
from services.signing.file_keys import PUBLIC_KEYS_FILE, keys_dir, load_or_create_signer
from tests.faults.harness import (
    CALLER,
    CORRIDOR,
    HEALTH_INTERVAL_S,
    NODES,
    REPO,
    SIM_SEED,
    Harness,
    _exited,
    _kill,
    _read_json,
    _read_text,
    _until,
)

# The drill caller's hourly spend limit (amount plus max fee while open, the settled total
# once done): about two thirds of the load's sum, so the engines must refuse the rest
# between them, each judging with the others' reservations (ADR 0073).
SPEND_LIMIT_MSAT: Final = 2_400_000
ENGINES: Final = 3
EXECUTORS_PER_NODE: Final = 2
CLUSTER_SIZE: Final = 3
REPLICAS: Final = 3
STREAMS: Final = (
    subjects.CMD_STREAM,
    subjects.EVT_STREAM,
    subjects.DLQ_STREAM,
    subjects.DISPATCH_STREAM,
    subjects.CHECKPOINT_STREAM,
)


@dataclass
class ClusterHarness(Harness):
    # The engine processes by index; a killed one stays here until it is started again.
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    async def start(self, *, failpoints: dict[str, str] | None = None) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o755)  # PostgreSQL's service user traverses it
        self._creds[CALLER] = nats_auth.ensure(
            self.work, role="caller", ident=CALLER, kind="service"
        )
        for region, node in NODES:
            self._creds[node] = nats_auth.ensure(
                self.work, role="executor", ident=node, region=region, node=node
            )
        self.stack = DevStack(
            self.work / "servers",
            fsync=True,
            keep_data=False,
            identity_dir=self.work,
            nats_cluster_size=CLUSTER_SIZE,
        )
        await asyncio.to_thread(self.stack.start)
        self.engine_env["CORRIDOR_POLICY_FILE"] = str(self._policy_file())
        await self._dispatch_stream_as_an_executor_makes_it()
        self.sim = spawn(
            self._cli("sim", "up", "--seed", str(SIM_SEED), "--state-dir", str(self.sim_dir)),
            log_path=self.log("sim"),
            env=self._env(),
        )
        # One signing key for every engine; the executors trust its public half.
        load_or_create_signer(keys_dir(self.work / "engine-0"))
        for index in range(1, ENGINES):
            shutil.copytree(
                keys_dir(self.work / "engine-0"), keys_dir(self.work / f"engine-{index}")
            )
        for index in range(ENGINES):
            await self.start_engine_process(index)
        await _until(
            lambda: "nodes" in _read_json(self.sim_dir / "endpoints.json"),
            what="the simulated network",
            proc=self.sim,
            log=self.log("sim"),
        )
        keys_dir(self.sim_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            keys_dir(self.work / "engine-0") / PUBLIC_KEYS_FILE,
            keys_dir(self.sim_dir) / PUBLIC_KEYS_FILE,
        )
        for _, node in NODES:
            for copy in range(EXECUTORS_PER_NODE):
                await self.start_executor(node, copy=copy)

    def _policy_file(self) -> Path:
        """The default policy with a spend limit of its own for the drill's caller, refused
        (not sent for approval, which no drill operator would give) when exceeded."""
        text = (REPO / "services" / "policy" / "default.yaml").read_text()
        text = text.replace("on_exceed: approval", "on_exceed: reject", 1)
        head, spend = text.split("\nspend:\n", 1)
        own = f"callers: {{{CALLER}: [{{window_s: 3600, limit_msat: {SPEND_LIMIT_MSAT}}}]}}"
        spend = spend.replace("callers: {}", own, 1)
        path = self.work / "policy.yaml"
        path.write_text(head + "\nspend:\n" + spend)
        return path

    async def _dispatch_stream_as_an_executor_makes_it(self) -> None:
        """An executor that starts before any engine makes CORRIDOR_DISPATCH with one copy
        (services/executor/consumer.py): the engines must move it to three (ADR 0195)."""
        from services.bus.nats_adapter import NatsBus
        from services.bus.stream_specs import stream_spec

        nc = await connect(self.stack.nats_url, name="drill-setup", creds=self.stack.engine_creds)
        try:
            await NatsBus(nc, nc.jetstream()).add_stream(
                stream_spec(subjects.DISPATCH_STREAM, duplicate_window_s=120)
            )
        finally:
            await nc.close()

    def _database_url(self, index: int) -> str:
        """The engine role's URL naming the process, so pg_stat_activity tells them apart."""
        parts = urlsplit(self.stack.database_url)
        query = "&".join(
            q for q in (parts.query, urlencode({"application_name": f"engine-{index}"})) if q
        )
        return urlunsplit(parts._replace(query=query))

    async def start_engine_process(self, index: int) -> None:
        state = self.work / f"engine-{index}"
        log = self.log(f"engine-{index}")
        offset = log.stat().st_size if log.exists() else 0
        env = self._env(
            NATS_URL=self.stack.nats_url,  # every member of the cluster
            DATABASE_URL=self._database_url(index),
            CORRIDOR_CREDS=str(self.stack.engine_creds),
            CORRIDOR_CREDENTIALS_FILE=str(registry_path(self.stack.home)),
            CORRIDOR_STATE_DIR=str(state),
            CORRIDOR_BUS_STREAM_REPLICAS=str(REPLICAS),
            CORRIDOR_CORRIDORS=json.dumps({CORRIDOR: [f"{r}/{n}" for r, n in NODES]}),
            CORRIDOR_HEALTH_INTERVAL_S=str(HEALTH_INTERVAL_S),
            **self.engine_env,
        )
        proc = spawn([sys.executable, "-m", "tests.engine_process"], log_path=log, env=env)
        self.procs[index] = proc
        # tests/engine_process.py prints "ready" once the engine takes commands.
        await _until(
            lambda: "\nready\n" in "\n" + _read_text(log)[offset:],
            what=f"engine {index}",
            proc=proc,
            log=log,
        )

    async def kill_engine_process(self, index: int) -> None:
        """kill -9 one engine, and the relay (leading or standing by) it runs."""
        await _kill(self.procs[index])

    async def relay_leader(self) -> int | None:
        """The engine whose session holds the relay lease, as PostgreSQL sees it."""
        conn = await asyncpg.connect(self.auditor_url)
        try:
            name = await conn.fetchval(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = $1",
                ADVISORY_LOCK_KEYS[RELAY_LEASE],
            )
        finally:
            await conn.close()
        if not name or not str(name).startswith("engine-"):
            return None
        return int(str(name).removeprefix("engine-"))

    async def stop(self) -> None:
        procs = [*self.executors.values(), *self.procs.values()]
        procs += [self.sim] if self.sim is not None else []
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                await _exited(proc, timeout_s=15.0)
            except AssertionError:
                proc.kill()
        await asyncio.to_thread(self.stack.stop)
