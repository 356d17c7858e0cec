"""The drills' stack: every part a real process, each one killable and restartable.

nats-server and PostgreSQL (``DevStack``) run as child processes of the test; the engine (with
its outbox relay, which runs inside the engine process) is ``corridor up --no-sim``; the
simulated network is ``corridor sim up``; each region executor is ``tests.faults.executor_main``
(the real ``Executor`` with short clocks). The corridor table is cut to one corridor over two
LND nodes, so two executor processes carry the whole load and killing one matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg

from services.devstack import DevStack
from services.devstack.process import spawn
from services.failpoints import ENV as FAILPOINTS_ENV
from services.failpoints import RECORD_ENV as FAILPOINTS_RECORD_ENV
from services.identity import nats_auth
from services.identity.registry import registry_path
from services.signing.file_keys import PUBLIC_KEYS_FILE, keys_dir

REPO: Final = Path(__file__).resolve().parents[2]
CALLER: Final = "drill"
CORRIDOR: Final = "us-eu"
# us-lnd is preferred; eu-lnd takes the corridor when us-lnd's executor stops reporting.
NODES: Final = (("us", "us-lnd"), ("eu", "eu-lnd"))
SIM_SEED: Final = 1
# A process start on the shared 2-core machine takes seconds; these are failure deadlines.
START_TIMEOUT_S: Final = 60.0
EXIT_TIMEOUT_S: Final = 30.0
# Reports every second; three missed make a node unhealthy (the executors' DRILL_LIMITS).
HEALTH_INTERVAL_S: Final = 1.0


@dataclass
class Harness:
    work: Path
    stack: DevStack = field(init=False)
    engine: subprocess.Popen[bytes] | None = None
    sim: subprocess.Popen[bytes] | None = None
    executors: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Extra environment for the engine process (a drill may tune a setting).
    engine_env: dict[str, str] = field(default_factory=dict)
    _creds: dict[str, Path] = field(default_factory=dict)

    @property
    def engine_dir(self) -> Path:
        return self.work / "engine"

    @property
    def sim_dir(self) -> Path:
        return self.work / "sim"

    @property
    def failpoint_record(self) -> Path:
        return self.work / "failpoints.log"

    @property
    def caller_creds(self) -> Path:
        return self._creds[CALLER]

    @property
    def auditor_url(self) -> str:
        assert self.stack.database_urls is not None
        return self.stack.database_urls.auditor

    def sim_endpoints(self) -> dict[str, Any]:
        return dict(json.loads((self.sim_dir / "endpoints.json").read_text()))

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"

    async def start(self, *, failpoints: dict[str, str] | None = None) -> None:
        """``failpoints``: node -> ``CORRIDOR_FAILPOINTS`` for that node's first executor."""
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o755)  # PostgreSQL's service user traverses it
        # Made before nats-server starts, so it admits them from its first moment.
        self._creds[CALLER] = nats_auth.ensure(
            self.work, role="caller", ident=CALLER, kind="service"
        )
        for region, node in NODES:
            self._creds[node] = nats_auth.ensure(
                self.work, role="executor", ident=node, region=region, node=node
            )
        self.stack = DevStack(
            self.work / "servers", fsync=True, keep_data=False, identity_dir=self.work
        )
        await asyncio.to_thread(self.stack.start)
        self.sim = spawn(
            self._cli("sim", "up", "--seed", str(SIM_SEED), "--state-dir", str(self.sim_dir)),
            log_path=self.log("sim"),
            env=self._env(),
        )
        await self.start_engine()
        await _until(
            lambda: "nodes" in _read_json(self.sim_dir / "endpoints.json"),
            what="the simulated network",
            proc=self.sim,
            log=self.log("sim"),
        )
        # The executors trust the engine's public key, copied as an operator copies it.
        keys_dir(self.sim_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            keys_dir(self.engine_dir) / PUBLIC_KEYS_FILE, keys_dir(self.sim_dir) / PUBLIC_KEYS_FILE
        )
        for _, node in NODES:
            await self.start_executor(node, failpoints=(failpoints or {}).get(node, ""))

    async def start_engine(self) -> None:
        assert self.engine is None or self.engine.poll() is not None, "the engine runs"
        env = self._env(
            NATS_URL=self.stack.nats_url,
            DATABASE_URL=self.stack.database_url,
            CORRIDOR_CREDS=str(self.stack.engine_creds),
            # The registry the test's nats-server serves: the engine checks callers against it.
            CORRIDOR_CREDENTIALS_FILE=str(registry_path(self.stack.home)),
            CORRIDOR_CORRIDORS=json.dumps({CORRIDOR: [f"{r}/{n}" for r, n in NODES]}),
            CORRIDOR_HEALTH_INTERVAL_S=str(HEALTH_INTERVAL_S),
            **self.engine_env,
        )
        proc = self.engine = spawn(
            self._cli("up", "--no-sim", "--state-dir", str(self.engine_dir)),
            log_path=self.log("engine"),
            env=env,
        )
        # `corridor up` writes its pid to endpoints.json once the engine and its relay run.
        await _until(
            lambda: _read_json(self.engine_dir / "endpoints.json").get("pid") == proc.pid,
            what="the engine",
            proc=proc,
            log=self.log("engine"),
        )

    async def kill_engine(self) -> None:
        """kill -9 the engine process, and with it the outbox relay it runs."""
        assert self.engine is not None
        await _kill(self.engine)

    async def stop_engine(self) -> None:
        """A clean stop (SIGTERM), as an operator restarts the engine."""
        assert self.engine is not None
        self.engine.send_signal(signal.SIGTERM)
        await _exited(self.engine)

    async def start_executor(self, node: str, *, failpoints: str = "", copy: int = 0) -> None:
        """``copy``: a further executor of the same node (its key is ``node#copy``), as a
        region runs more than one for a node (tests/faults/cluster.py)."""
        region = dict((n, r) for r, n in NODES)[node]
        name = node if copy == 0 else f"{node}#{copy}"
        ready = self.work / f"executor-{name}.ready"
        ready.unlink(missing_ok=True)
        env = self._env(
            **{FAILPOINTS_ENV: failpoints, FAILPOINTS_RECORD_ENV: str(self.failpoint_record)}
        )
        argv = [
            sys.executable,
            "-m",
            "tests.faults.executor_main",
            "--nats-url",
            self.stack.nats_url,
            "--region",
            region,
            "--node",
            node,
            "--state-dir",
            str(self.sim_dir),
            "--creds",
            str(self._creds[node]),
            "--ready",
            str(ready),
        ]
        proc = self.executors[name] = spawn(argv, log_path=self.log(f"executor-{name}"), env=env)
        await _until(
            lambda: _read_text(ready).strip() == str(proc.pid),
            what=f"executor {name}",
            proc=proc,
            log=self.log(f"executor-{name}"),
        )

    async def executor_exit(self, node: str, *, timeout_s: float) -> int:
        """The return code once ``node``'s executor has exited (-9 when a failpoint fired)."""
        return await _exited(self.executors[node], timeout_s=timeout_s)

    async def crash_postgres(self) -> str:
        """Stop PostgreSQL in immediate mode (SIGQUIT: no checkpoint, like a crash) and start
        it on the same data; its log from the crash on, which shows the recovery."""
        pg = self.stack._postgres
        assert pg is not None and pg.proc is not None, "the embedded PostgreSQL runs"
        log = pg.pgdata().parent / "postgres.log"
        offset = log.stat().st_size
        pg.proc.send_signal(signal.SIGQUIT)
        await _exited(pg.proc)
        pg.proc = None
        starting = asyncio.ensure_future(asyncio.to_thread(pg.start))
        # Knock while it recovers, as a client in a hurry would: each refusal is logged, so the
        # log shows "the database system is starting up" whenever there was such a window.
        while not starting.done():
            with contextlib.suppress(Exception):
                await (await asyncpg.connect(self.auditor_url, timeout=1)).close()
            await asyncio.sleep(0.005)  # a poll interval, not synchronisation
        await starting
        with log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    async def restart_nats(self) -> None:
        """kill -9 nats-server and start it again on the same port and JetStream store."""
        server = self.stack._nats
        assert server is not None and server.proc is not None, "the embedded nats-server runs"
        await _kill(server.proc)
        server.proc = None
        await asyncio.to_thread(server.start)

    async def stop(self) -> None:
        procs = [*self.executors.values(), self.engine, self.sim]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc is not None:
                with contextlib.suppress(AssertionError):
                    await _exited(proc, timeout_s=15.0)
                if proc.poll() is None:
                    proc.kill()
        await asyncio.to_thread(self.stack.stop)

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "services.cli.main", *args]

    def _env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CORRIDOR_") and k not in ("NATS_URL", "DATABASE_URL")
        }
        # No corridor.toml from the working directory; JSON logs at info for a post-mortem.
        env.update(
            CORRIDOR_CONFIG=str(self.work / "no-config.toml"),
            CORRIDOR_LOG_LEVEL="info",
            PYTHONPATH=str(REPO),
        )
        env.update(extra)
        return env


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


async def _until(
    ready: Any,
    *,
    what: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """Poll ``ready`` (a cheap local read) until true; fail if ``proc`` died or on deadline."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready after {timeout_s}s; see {log}")
        await asyncio.sleep(0.05)  # a poll interval, not synchronisation


async def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert await _exited(proc) == -signal.SIGKILL


async def _exited(proc: subprocess.Popen[bytes], *, timeout_s: float = EXIT_TIMEOUT_S) -> int:
    deadline = time.monotonic() + timeout_s
    while (code := proc.poll()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"process {proc.pid} still running after {timeout_s}s")
        await asyncio.sleep(0.02)  # a poll interval, not synchronisation
    return code
