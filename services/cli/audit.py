"""``replay`` (the log as JSON lines, optionally hash-verified) and ``exceptions`` (the
operator queue), read straight from the event log in PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import msgspec

from schemas.codec import encode
from services.cli import exit_codes, output
from services.cli.credentials import home_of
from services.cli.errors import UsageError
from services.cli.progress import Progress
from services.endpoints import DEFAULT_STATE_DIR, StackEndpoints, find_stack
from services.engine.event_codec import to_recorded
from services.eventstore.port import EventStore
from services.eventstore.postgres import PostgresEventStore

# Reading the checkpoint stream: a credential without permission sees only timeouts, and a
# verification must not hang on one.
STREAM_READ_TIMEOUT_S: Final = 10.0
# Events verified per call, so the progress line moves while a long chain is checked.
VERIFY_CHUNK: Final = 20_000


async def replay(args: argparse.Namespace) -> int:
    if args.from_position < 1:
        raise UsageError("--from-position counts from 1")
    out: TextIO = args.out.open("w") if args.out else sys.stdout
    try:
        return await replay_to(
            args.state_dir, from_position=args.from_position, stream=args.stream, out=out,
            verify=args.verify, keys=getattr(args, "keys", None),
        )  # fmt: skip
    finally:
        if args.out:
            out.close()


async def replay_to(
    state_dir: Path | None, *, from_position: int, stream: str | None, out: TextIO,
    verify: bool, keys: Path | None = None,
) -> int:  # fmt: skip
    stack = find_stack(state_dir)
    store = await PostgresEventStore.connect(stack.database_url, pool_max=2)
    try:
        if stream:
            for event in await store.read_stream(stream):
                if event.position >= from_position:
                    out.write(encode(to_recorded(event)).decode() + "\n")
        else:
            head = await store.head_position()
            total = max(0, head - from_position + 1)
            with Progress("replay", total=total, unit="events") as progress:
                async for batch in store.pages(after_position=from_position - 1):
                    out.writelines(encode(to_recorded(e)).decode() + "\n" for e in batch)
                    progress.advance(len(batch))
        if not verify:
            return exit_codes.OK
        chain = await _verify(store)
        checkpoints = await _verify_checkpoints(store, stack, state_dir, keys)
        # One line: the chain's report, the checkpoints' report (ADR 0065), and ``ok`` for both.
        report = msgspec.to_builtins(chain)
        report["chain_ok"] = chain.ok
        report["checkpoints"] = checkpoints
        report["ok"] = bool(chain.ok and checkpoints["ok"])
        sys.stderr.write(msgspec.json.encode(report).decode() + "\n")
        return exit_codes.OK if report["ok"] else exit_codes.VERIFICATION_FAILED
    finally:
        await store.close()


async def _verify(store: EventStore) -> Any:
    """The whole chain, in chunks so the progress line can follow; one report at the end."""
    from services.eventstore.port import ChainReport

    checked, last = 0, 0
    with Progress("verify", total=await store.head_position(), unit="events") as progress:
        while True:
            report = await store.verify_chain(after_position=last, limit=VERIFY_CHUNK)
            checked += report.checked
            progress.update(checked)
            if not report.ok:
                return ChainReport(
                    checked=checked, last_position=report.last_position, ok=False,
                    first_bad_position=report.first_bad_position, problem=report.problem,
                )  # fmt: skip
            if report.checked < VERIFY_CHUNK:
                return ChainReport(checked=checked, last_position=report.last_position, ok=True)
            last = report.last_position


async def _verify_checkpoints(
    store: EventStore, stack: StackEndpoints, state_dir: Path | None, keys: Path | None
) -> dict[str, Any]:
    """The log against the engine's signed checkpoints, in the table and in JetStream. The
    public keys come from ``--keys`` or the state dir; none readable is a failure: an
    unverifiable log is not a verified one."""
    from services.eventstore.checkpoint_verify import verify_checkpoints
    from services.signing.file_keys import PUBLIC_KEYS_FILE, keys_dir, read_public_keys
    from services.signing.port import KeyFileError

    path = keys or keys_dir(home_of(state_dir) or DEFAULT_STATE_DIR) / PUBLIC_KEYS_FILE
    try:
        verifier = read_public_keys(path)
    except KeyFileError as exc:
        return {"ok": False, "problems": [f"cannot verify checkpoints: {exc}"]}
    published, unchecked = await _published_checkpoints(stack, state_dir)
    report = await verify_checkpoints(
        store, verifier, published=published, stream_unchecked=unchecked
    )
    out: dict[str, Any] = msgspec.to_builtins(report)
    return out


async def _published_checkpoints(
    stack: StackEndpoints, state_dir: Path | None
) -> tuple[list[Any] | None, str | None]:
    """The checkpoints in ``CORRIDOR_CHECKPOINTS``, or why they could not be read (the stack's
    NATS unreachable, or the credential not allowed to read the stream)."""
    from services.bus.subjects import CHECKPOINT_STREAM
    from services.cli.credentials import resolve
    from services.cli.engine import connect
    from services.eventstore.checkpoint_verify import read_published

    try:
        seed = resolve(state_dir, role="auditor").path
        nc = await connect(stack.nats_url, name="corridor-replay-verify", creds=seed)
    except Exception as exc:  # unreachable, refused, no credential
        return None, f"NATS not reachable: {exc}"[:300]
    try:
        published = await asyncio.wait_for(
            read_published(nc.jetstream(), CHECKPOINT_STREAM), STREAM_READ_TIMEOUT_S
        )
        return published, None
    except Exception as exc:  # not permitted (a timeout), no such stream
        return None, f"{CHECKPOINT_STREAM} not readable: {type(exc).__name__} {exc}"[:300]
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def exceptions(args: argparse.Namespace) -> int:
    if args.stuck_after_s < 1:
        raise UsageError("--stuck-after-s must be at least 1")
    from services.cli.liquidity import WAIT_S_MAX

    if not 0 <= args.wait_s <= WAIT_S_MAX:
        raise UsageError(f"--wait-s must be in [0, {WAIT_S_MAX:g}]")
    alerts = await liquidity_alerts(args) if args.wait_s > 0 else []
    rows = await exception_rows(
        args.state_dir, stuck_after_s=args.stuck_after_s, liquidity_alerts=alerts
    )
    if args.json:
        output.print_json(rows)
    elif not rows:
        print("no exceptions: nothing waits for an operator")
    else:
        output.print_table(
            ["INTENT", "KIND", "SINCE", "REGION", "NODE", "DETAIL"],
            [[r["intent_id"], r["kind"], output.utc(r.get("since_ms")), r.get("region"),
              r.get("node"), r["detail"]] for r in rows],
        )  # fmt: skip
    return exit_codes.OK


async def liquidity_alerts(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The liquidity alerts ``corridor liquidity`` shows (the executors' channel snapshots
    judged against the targets, ADR 0241), as ``GET /v1/exceptions`` lists them. Without a
    running stack to listen to, none, and a note says so: the rest of the queue stands."""
    from services.cli.engine import EngineClient
    from services.cli.liquidity import current_view
    from services.settings import Settings

    try:
        async with EngineClient.open(args.state_dir) as engine:
            view, _ = await current_view(args, engine, Settings())
    except Exception as exc:  # no stack, no NATS, no operator credential
        print(f"note: no liquidity alerts ({type(exc).__name__}: {str(exc)[:200]})",
              file=sys.stderr)  # fmt: skip
        return []
    if view.get("missing"):
        print(f"note: not heard from {', '.join(view['missing'])}", file=sys.stderr)
    alerts: list[dict[str, Any]] = view["alerts"]
    return alerts


async def exception_rows(
    state_dir: Path | None,
    *,
    stuck_after_s: int,
    liquidity_alerts: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The exception queue, from the projection tables (``projections.exception_queue``)."""
    from projections.exception_queue import exception_queue
    from services.cli.projection_reads import projection_store

    now_ms = time.time_ns() // 1_000_000
    async with projection_store(state_dir) as reader:
        intents = await reader.open_intent_docs()
        recon = await reader.reconciliation_docs(open_only=True)
    return exception_queue(
        intents, recon, now_ms=now_ms, stuck_after_ms=stuck_after_s * 1000,
        liquidity_alerts=liquidity_alerts,
    )  # fmt: skip
