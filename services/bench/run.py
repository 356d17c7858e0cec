"""`corridor bench`: Corridor's figures beside the machine's raw NATS and PostgreSQL speed.

Everything runs on embedded servers started here with fsync on (``synchronous_commit=on``,
JetStream ``sync_interval: always``). The engine runs in its own process (`corridor up --no-sim`)
so its memory is its own, the simulated network (zero hop delay) in another; the region
executors and the load generator share this process.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from services.bench import baselines, scale, store_bench
from services.bench.e2e import (
    InvoiceSource,
    open_loop_count,
    pay_directly,
    run_closed_loop,
    run_open_loop,
)
from services.bench.meter import (
    Meter,
    cpu_s,
    host_cpu_ticks,
    postgres_pids,
    rss_mib,
    steal_pct,
)
from services.bench.profile import Profiler
from services.bench.stats import p50_p95, percentile, summary
from services.bench.verdict import ratios_and_targets
from services.bus import subjects
from services.bus.jetstream import connect
from services.cli.endpoints import read_endpoints_file
from services.devstack import DevStack
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls, create_database
from services.executor.fleet import ExecutorFleet, targets_from_corridors
from services.executor.limits import ExecutorLimits
from services.identity.registry import registry_path
from services.settings import DEFAULT_CORRIDORS
from services.signing.file_keys import PUBLIC_KEYS_FILE, keys_dir

# One-at-a-time latencies are also taken paced like the 10 intents/s run: a machine waking
# from idle answers slower than a busy one.
PACED_SAMPLES = 30
PACED_GAP_S = 0.1


def _progress(step: str) -> None:
    """One line per step on stderr, so a watcher (or a profiler) knows where the run is."""
    print(f"bench {time.strftime('%H:%M:%S')} {step}", file=sys.stderr, flush=True)


async def _create_db(stack: DevStack, name: str) -> RoleUrls:
    """A fresh database on the stack's server, migrated, with each role's URL (ADR 0064)."""
    assert stack.database_urls is not None, "the bench starts its own PostgreSQL"
    return await create_database(stack.database_urls, name, replace_existing=True)


def _process_groups(
    stack: DevStack, engine: subprocess.Popen[bytes], sim: subprocess.Popen[bytes]
) -> dict[str, list[int]]:
    nats = stack._nats  # the embedded server knows its process
    return {
        "engine": [engine.pid],
        "simulated_network": [sim.pid],
        "executors_and_load": [os.getpid()],
        "nats_server": [nats.proc.pid] if nats is not None and nats.proc is not None else [],
        "postgres": postgres_pids(),
    }


async def run_bench(
    *,
    runs: int,
    e2e_intents: int,
    quick: bool,
    profile_dir: Path | None = None,
    scale: bool = False,
) -> dict[str, Any]:
    """``scale``: the end-to-end run, then what limits scale-out (``scale.py``, ADR 0197),
    instead of the raw baselines and the event store figures."""
    work = Path(tempfile.mkdtemp(prefix="corridor-bench-"))
    # Traversable by PostgreSQL's service user; kept for a post-mortem if the run fails.
    os.chmod(work, 0o755)
    creds = _make_credentials(work)
    stack = DevStack(work / "servers", fsync=True, keep_data=False, identity_dir=work)
    await asyncio.to_thread(stack.start)
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        },
        "config": {"runs": runs, "e2e_intents": e2e_intents, "fsync": True, "hop_delay_s": 0.0},
    }  # fmt: skip
    cpu_before = host_cpu_ticks()
    try:
        if not scale:
            _progress("baselines: raw asyncpg and nats-py")
            result["baselines"] = await _baselines(stack, runs, quick)
            _progress("event store: append and replay")
            result["event_store"] = await _store(stack, runs, quick)
        _progress("end to end: starting the engine and the simulated network")
        result.update(
            await _end_to_end(
                stack, work, runs, e2e_intents, quick=quick, profile_dir=profile_dir, creds=creds
            )
        )
        if scale:
            result["scale"] = await _scale(stack, result, quick)
    except BaseException:
        _progress(f"failed; servers' data and logs are kept in {work}")
        raise
    finally:
        await asyncio.to_thread(stack.stop)
    # A run leaves about 170 MB of server data; it is only worth keeping after a failure.
    await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
    result["machine"]["steal_pct_during_run"] = steal_pct(cpu_before, host_cpu_ticks())
    if not scale:
        ratios_and_targets(result)
    return result


async def _scale(stack: DevStack, result: dict[str, Any], quick: bool) -> dict[str, Any]:
    shape = result["append_shape"]
    _progress("scale: head-lock hold per append")
    hold = await scale.head_lock_hold(
        (await _create_db(stack, "bench_lock")).engine,
        events_per_append=shape["events_per_append"],
        appends_per_intent=shape["appends_per_intent"],
        quick=quick,
    )
    _progress("scale: publishes on one nats-server (R1) and a 3-node cluster (R3)")
    cluster = await scale.cluster_cost(stack, quick=quick)
    cpu_ms = result["cost_per_intent"]["cpu_ms_by_process"]
    engine_ms = cpu_ms.get("engine", 0.0)
    return {
        "append_shape": shape,
        "head_lock": hold,
        "cpu_ms_per_intent_by_process": cpu_ms,
        # The engine process runs the intake, the writer loop and the relay: one core of it.
        "intents_per_engine_core_s": round(1000 / engine_ms) if engine_ms else None,
        "nats_cluster": cluster,
    }


async def _baselines(stack: DevStack, runs: int, quick: bool) -> dict[str, Any]:
    # The raw baselines make their own table: the owner may.
    url = (await _create_db(stack, "bench_raw")).owner
    single_rows, batched_rows = (300, 5_000) if quick else (2_000, 30_000)
    messages_sync, messages_pipe = (300, 3_000) if quick else (2_000, 30_000)
    round_trips = 100 if quick else 1_000
    # The raw baselines make their own stream: the stack's engine credential may.
    nc = await connect(stack.nats_url, name="bench-baseline", creds=stack.engine_creds)
    responder = await connect(
        stack.nats_url, name="bench-baseline-responder", creds=stack.engine_creds
    )
    js = nc.jetstream(publish_async_max_pending=4000)
    latencies_ms: dict[str, list[float]] = {"nats_round_trip": [], "pg_commit": [],
                                            "js_publish": []}  # fmt: skip
    try:
        await js.add_stream(name="BENCH_RAW", subjects=["bench.raw.>"], allow_atomic=True)
        out: dict[str, list[float]] = {k: [] for k in (
            "pg_single_rows_per_s", "pg_batched_rows_per_s", "js_sync_msgs_per_s",
            "js_pipelined_msgs_per_s", "js_atomic_batched_msgs_per_s")}  # fmt: skip
        for _ in range(runs):
            out["pg_single_rows_per_s"].append(
                await baselines.pg_single_rows_per_s(url, single_rows, latencies_ms["pg_commit"])
            )
            out["pg_batched_rows_per_s"].append(
                await baselines.pg_batched_rows_per_s(url, batched_rows)
            )
            out["js_sync_msgs_per_s"].append(
                await baselines.js_sync_msgs_per_s(
                    js, "bench.raw.sync", messages_sync, latencies_ms["js_publish"]
                )
            )
            out["js_pipelined_msgs_per_s"].append(
                await baselines.js_pipelined_msgs_per_s(js, "bench.raw.pipe", messages_pipe)
            )
            out["js_atomic_batched_msgs_per_s"].append(
                await baselines.js_atomic_batched_msgs_per_s(
                    nc, "BENCH_RAW", "bench.raw.atomic", messages_pipe
                )
            )
            latencies_ms["nats_round_trip"] += await baselines.nats_round_trips_ms(
                nc, responder, round_trips
            )
        paced_ms = {
            "nats_round_trip": await baselines.nats_round_trips_ms(
                nc, responder, PACED_SAMPLES, PACED_GAP_S
            ),
            "pg_commit": await baselines.pg_commits_ms(url, PACED_SAMPLES, PACED_GAP_S),
            "js_publish": await baselines.js_publishes_ms(
                js, "bench.raw.paced", PACED_SAMPLES, PACED_GAP_S
            ),
        }
        await js.delete_stream("BENCH_RAW")
    finally:
        await nc.close()
        await responder.close()
    unit = {"pg": "rows/s", "js": "msgs/s"}
    result: dict[str, Any] = {k: summary(v, unit=unit[k[:2]]) for k, v in out.items()}
    # Each operation alone, one at a time: what the parts on an intent's path cost in time,
    # back to back (the machine busy) and paced like the 10 intents/s run (waking from idle).
    result["one_at_a_time_latency_ms"] = {
        "back_to_back": {name: p50_p95(values) for name, values in latencies_ms.items()},
        "paced": {name: p50_p95(values) for name, values in paced_ms.items()},
    }
    return result


async def _store(stack: DevStack, runs: int, quick: bool) -> dict[str, Any]:
    url = (await _create_db(stack, "bench_store")).engine
    store = await PostgresEventStore.connect(url, pool_max=4)
    single, batched = (300, 6_000) if quick else (2_000, 60_000)
    names = ("append_single_events_per_s", "append_batched_events_per_s", "replay_events_per_s")
    out: dict[str, list[float]] = {name: [] for name in names}
    try:
        for run in range(runs):
            out["append_single_events_per_s"].append(
                await store_bench.append_single_per_s(store, single, f"s{run}")
            )
            out["append_batched_events_per_s"].append(
                await store_bench.append_batched_per_s(store, batched, f"b{run}")
            )
            rate, _ = await store_bench.replay_per_s(store)
            out["replay_events_per_s"].append(rate)
    finally:
        await store.close()
    return {k: summary(v, unit="events/s") for k, v in out.items()}


async def _end_to_end(
    stack: DevStack, work: Path, runs: int, intents: int, *, quick: bool,
    profile_dir: Path | None = None, creds: _Credentials,
) -> dict[str, Any]:  # fmt: skip
    warmup, half_s, low_s = (20, 2.0, 1.0) if quick else (100, 8.0, 3.0)
    db_url = (await _create_db(stack, "corridor")).engine
    engine_dir = work / "engine"
    env = {**os.environ, "NATS_URL": stack.nats_url, "DATABASE_URL": db_url,
           "CORRIDOR_LOG_LEVEL": "warning", "CORRIDOR_HEALTH_INTERVAL_S": "1"}  # fmt: skip
    if stack.engine_creds is not None:
        # The engine process is given our server by NATS_URL, so connects as CORRIDOR_CREDS.
        env["CORRIDOR_CREDS"] = str(stack.engine_creds)
        env["CORRIDOR_CREDENTIALS_FILE"] = str(registry_path(stack.home))
    sim_dir = work / "sim"
    # Three processes share the two cores: the engine, the simulated network, and this one
    # (load generator plus region executors), so no Python process is the others' bottleneck.
    engine = _spawn(["up", "--no-sim", "--state-dir", str(engine_dir)], env, work / "engine.log")
    sim = _spawn(
        ["sim", "up", "--seed", "1", "--hop-delay-s", "0", "--state-dir", str(sim_dir)],
        env, work / "sim.log",
    )  # fmt: skip
    fleet = None
    nc = watcher = None
    source = None
    try:
        await _wait_ready(engine, engine_dir / "endpoints.json", work / "engine.log")
        await _wait_ready(sim, sim_dir / "endpoints.json", work / "sim.log")
        nodes = read_endpoints_file(sim_dir / "endpoints.json")["nodes"]
        source = InvoiceSource(nodes)
        exec_dir = sim_dir
        # The executors trust the engine's public signing key, copied as an operator copies it
        # to an executor host (ADR 0063).
        keys_dir(exec_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            keys_dir(engine_dir) / PUBLIC_KEYS_FILE, keys_dir(exec_dir) / PUBLIC_KEYS_FILE
        )
        fleet = ExecutorFleet(
            nats_url=stack.nats_url, state_dir=exec_dir,
            targets=targets_from_corridors(DEFAULT_CORRIDORS),
            limits=ExecutorLimits(health_interval_s=1.0), creds=creds.executors,
        )  # fmt: skip
        await fleet.start()
        # The load submits as caller `bench` and sees settlements as an auditor: the server
        # checks their permissions on every message, a cost the figures include (ADR 0060).
        nc = await connect(stack.nats_url, name="bench-load", creds=creds.caller)
        watcher = await connect(stack.nats_url, name="bench-watch", creds=creds.auditor)
        settled_q: asyncio.Queue[str] = asyncio.Queue()
        settled_at: dict[str, float] = {}
        seen_wall_ms: dict[str, float] = {}

        async def on_settled(msg: Any) -> None:
            intent_id = msg.headers.get("Corridor-Stream-Id", "")
            settled_at[intent_id] = time.perf_counter()
            seen_wall_ms[intent_id] = time.time() * 1000
            settled_q.put_nowait(intent_id)

        # Live settlements of every caller (ADR 0067): a core subscription, no consumer.
        await watcher.subscribe(subjects.intent_event_subject("*", "IntentSettled"), cb=on_settled)
        await watcher.flush()
        await run_closed_loop(nc, await source.bodies("warm", warmup), window=64, settled=settled_q)
        _progress("end to end: the simulated network alone (its own lnd adapter, no Corridor)")
        direct = await _direct_payments(nodes, source, sim, runs, intents)
        closed = []
        costs: dict[str, Any] = {}

        def groups() -> dict[str, list[int]]:
            return _process_groups(stack, engine, sim)

        for run in range(runs):
            bodies = await source.bodies(f"sat{run}", intents)
            meter = await Meter.start(stack, db_url, groups)
            _progress(f"end to end: saturation run {run + 1}/{runs}, {intents} intents")
            profiler = None
            if profile_dir is not None and run == 0:
                profiler = Profiler(profile_dir)
                profiler.start({"engine": engine.pid, "simulated_network": sim.pid,
                                "executors_and_load": os.getpid()})  # fmt: skip
            closed.append(await run_closed_loop(nc, bodies, window=512, settled=settled_q))
            costs = await meter.per_intent(closed[-1].settled)
            if profiler is not None:
                # Before the next run's invoices are made, which would show in the profiles.
                profiles = await asyncio.to_thread(profiler.finish)
                _progress(f"profiles of saturation run 1 in {profile_dir}:\n{profiles}")
        saturation = sorted(r.settled_per_s for r in closed)[len(closed) // 2]
        events_per_intent = costs.get("events", 6.0)

        async def at_fraction(divisor: int, tag: str) -> dict[str, Any]:
            rate = max(1.0, saturation / divisor)
            bodies = await source.bodies(tag, open_loop_count(rate, half_s))
            _progress(f"end to end: latency at {rate:.0f} intents/s (1/{divisor} of saturation)")
            meter = await Meter.start(stack, db_url, groups)
            load = await run_open_loop(nc, bodies, rate_per_s=rate, settled_at=settled_at)
            load["cost_per_intent"] = await meter.per_intent(load["settled"])
            return load

        open_loop = await at_fraction(2, "half")
        # Saturation is measured closed-loop, where every stage batches deeply; an open-loop
        # load pays more per intent, so the curve's knee can sit below half of it. A quarter
        # shows which side of the knee half saturation fell on.
        quarter = await at_fraction(4, "quarter")
        # The floor: one intent at a time, so no queueing anywhere.
        low_bodies = await source.bodies("low", open_loop_count(10.0, low_s))
        _progress("end to end: latency at 10 intents/s")
        low_load = await run_open_loop(nc, low_bodies, rate_per_s=10.0, settled_at=settled_at)
        for load in (open_loop, quarter, low_load):
            load["unsettled_last_event"] = await _last_events(db_url, load.pop("unsettled_ids"))
            load["stages_ms"] = await _stages(db_url, load.pop("sent_wall_ms"), seen_wall_ms)
        engine_rss = rss_mib(engine.pid)
        shape = await scale.append_shape(db_url)
        submit_ms = sorted(ms for r in closed for ms in r.submit_latency_ms)
        return {
            "simulated_network": direct,
            "end_to_end": {
                "settled_intents_per_s": summary(
                    [r.settled_per_s for r in closed], unit="intents/s"
                ),
                "events_appended_per_s": summary(
                    [r.settled_per_s * events_per_intent for r in closed], unit="events/s"
                ),
                "settled_of_submitted": [f"{r.settled}/{r.intents}" for r in closed],
                "submit_reply_ms": {
                    "p50": round(percentile(submit_ms, 50), 1),
                    "p95": round(percentile(submit_ms, 95), 1),
                },
            },
            "latency_at_half_saturation": open_loop,
            "latency_at_quarter_saturation": quarter,
            "latency_at_low_load": low_load,
            "memory": {
                "engine_peak_rss_mib": engine_rss,
                "simulated_network_peak_rss_mib": rss_mib(sim.pid),
                "executors_and_load_peak_rss_mib": rss_mib(os.getpid()),
            },
            "cost_per_intent": costs,
            # How the engine grouped the whole run's log into appends (group commit).
            "append_shape": shape,
        }
    finally:
        for client in (nc, watcher):
            if client is not None:
                await client.close()
        if source is not None:
            await source.close()
        if fleet is not None:
            await fleet.stop()
        for proc in (sim, engine):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass(frozen=True)
class _Credentials:
    """The bench's seed files; empty under NATS_URL, where CORRIDOR_CREDS serves for all."""

    caller: Path | None = None
    auditor: Path | None = None
    executors: dict[str, Path] = field(default_factory=dict)


def _make_credentials(work: Path) -> _Credentials:
    """The load's caller, its settlement watcher and each node's executor, made before the
    servers start so that nats-server admits them from the first moment."""
    from services.identity import nats_auth

    if os.environ.get("NATS_URL"):
        return _Credentials()
    return _Credentials(
        caller=nats_auth.ensure(work, role="caller", ident="bench", kind="service"),
        auditor=nats_auth.ensure(work, role="auditor", ident="bench-watch"),
        executors={
            node: nats_auth.ensure(work, role="executor", ident=node, region=region, node=node)
            for region, node in targets_from_corridors(DEFAULT_CORRIDORS)
        },
    )


async def _direct_payments(
    nodes: list[dict[str, Any]],
    source: InvoiceSource,
    sim: subprocess.Popen[bytes],
    runs: int,
    intents: int,
) -> dict[str, Any]:
    """The simulated network's own speed and CPU per payment: invoices paid through the lnd
    adapter with no Corridor in between. On the bench's shared cores this part of every
    intent is a fixed cost that a real deployment does not pay on its Corridor host."""
    per_s: list[float] = []
    cpu_ms: dict[str, list[float]] = {"simulated_network": [], "lnd_adapter": []}
    count = max(20, intents // 2)
    pids = {"simulated_network": sim.pid, "lnd_adapter": os.getpid()}
    for run in range(runs):
        invoices = await source.invoices(f"direct{run}", count)
        before = {name: cpu_s(pid) for name, pid in pids.items()}
        seconds = await pay_directly(nodes, invoices, window=64)
        for name, pid in pids.items():
            cpu_ms[name].append((cpu_s(pid) - before[name]) * 1000 / count)
        per_s.append(count / seconds)
    back_to_back_ms: list[float] = []
    await pay_directly(nodes, await source.invoices("direct-one", 100), window=1,
                       latencies_ms=back_to_back_ms)  # fmt: skip
    paced_ms: list[float] = []
    await pay_directly(nodes, await source.invoices("direct-paced", PACED_SAMPLES), window=1,
                       latencies_ms=paced_ms, gap_s=PACED_GAP_S)  # fmt: skip
    return {
        "payments_per_s": summary(per_s, unit="payments/s"),
        "one_at_a_time_latency_ms": {
            "back_to_back": p50_p95(back_to_back_ms),
            "paced": p50_p95(paced_ms),
        },
        # What each intent's payment costs before Corridor does anything: the simulator's
        # servers, and the production adapter's gRPC client (part of the executors' share).
        "cpu_ms_per_payment": {
            name: summary(values, unit="ms", digits=3) for name, values in cpu_ms.items()
        },
    }


# Where an intent's time goes, from the engine's own timestamps (``recorded_at_ms`` is taken
# when a batch is planned, before its commit).
STAGES = (
    ("submit_to_received", "submit", "IntentReceived"),
    ("received_to_payment_reported", "IntentReceived", "PaymentSucceeded"),
    ("payment_reported_to_seen", "PaymentSucceeded", "seen"),
)


async def _stages(
    db_url: str, sent_wall_ms: dict[str, float], seen_wall_ms: dict[str, float]
) -> dict[str, dict[str, float]]:
    """p50/p95 of each stage, in wall-clock milliseconds (the engine's clock has 1 ms grain)."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, type, (extract(epoch from recorded_at) * 1000)::float8 AS at_ms"
            " FROM events WHERE stream_id = ANY($1::text[])",
            list(sent_wall_ms),
        )
    finally:
        await conn.close()
    marks: dict[str, dict[str, float]] = {
        i: {"submit": t, **({"seen": seen_wall_ms[i]} if i in seen_wall_ms else {})}
        for i, t in sent_wall_ms.items()
    }
    for row in rows:
        marks[row["stream_id"]].setdefault(row["type"], row["at_ms"])
    out: dict[str, dict[str, float]] = {}
    for name, start, end in STAGES:
        spans = sorted(m[end] - m[start] for m in marks.values() if start in m and end in m)
        out[name] = {
            "p50": round(percentile(spans, 50), 1),
            "p95": round(percentile(spans, 95), 1),
        }
    return out


async def _last_events(db_url: str, intent_ids: list[str]) -> dict[str, int]:
    """Why intents did not settle in time: their last event type, counted."""
    if not intent_ids:
        return {}
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (stream_id) type FROM events WHERE stream_id = ANY($1::text[])"
            " ORDER BY stream_id, stream_version DESC",
            intent_ids,
        )
    finally:
        await conn.close()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["type"]] = counts.get(row["type"], 0) + 1
    return counts


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip


async def _wait_ready(proc: subprocess.Popen[bytes], ready_file: Path, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(ready_file):  # noqa: ASYNC240 - a tiny local stat per poll
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"a bench process did not start; see {log_path}")
        await asyncio.sleep(0.05)  # waiting for the process's readiness file
