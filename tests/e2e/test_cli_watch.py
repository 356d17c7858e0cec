"""``corridor watch``: output strictly increasing in log position, ``--from-position`` resuming
exactly, also where stream sequences and positions differ, and a caller's credential showing
that caller's events only."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from services.bus import subjects
from services.cli.watch import watch
from services.endpoints import add_entries
from tests.e2e.test_cli import run_cli, running_stack
from tests.nats_creds import connect_as

DESTINATION = "02" + "22" * 32


def _positions(stdout: str) -> list[int]:
    return [json.loads(line)["position"] for line in stdout.splitlines()]


def _submit(sd: list[str], key: str, *, kind: str, amount_msat: int, signing: list[str]) -> str:
    # Agents pay as the agent `watcher` and sign (ADR 0066), services as `corridor up`'s
    # caller `local`.
    caller = "watcher" if kind == "agent" else "local"
    done = run_cli(
        "submit", *sd, "--caller-id", caller, "--caller-kind", kind, "--idempotency-key", key,
        "--amount-msat", str(amount_msat), "--destination", DESTINATION, "--json",
        *(signing if kind == "agent" else []),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    reply = json.loads(done.stdout)
    return str(reply["intent_id"])


def test_settlement_events_of_several_types_come_out_in_log_order(tmp_path: Path) -> None:
    # The agent's credential, made before the stack starts, where the CLI looks for the one
    # --caller-id names.
    state = tmp_path / "state"
    agent = state / "auth" / "agent-watcher.nk"
    added = run_cli("creds", "add", "--role", "agent", "--id", "watcher", "--out", str(agent),
                    "--state-dir", str(state))  # fmt: skip
    assert added.returncode == 0, added.stderr
    # And its signing key (ADR 0066), proposed by operator-1, approved by operator-2 (ADR 0068).
    key_file = tmp_path / "watcher.key"
    made = run_cli("agents", "keygen", "--out", str(key_file), "--json")
    assert made.returncode == 0, made.stderr
    public_key = json.loads(made.stdout)["public_key"]
    signing = ["--agent-key", str(key_file)]
    with running_stack(state) as state_dir:
        sd = ["--state-dir", str(state_dir)]
        # ``=``: a base64url key may start with "-", which argparse would take for an option.
        registered = run_cli("agents", "register", "--id", "watcher",
                             f"--public-key={public_key}", *sd)  # fmt: skip
        assert registered.returncode == 0, registered.stderr + registered.stdout
        key_id = json.loads(made.stdout)["key_id"]
        own = run_cli("agents", "approve", key_id, *sd)  # operator-1 proposed it
        assert own.returncode != 0 and "two_person_rule" in own.stderr, own.stderr
        approved = run_cli("agents", "approve", key_id, "--as", "operator-2", *sd)
        assert approved.returncode == 0, approved.stderr + approved.stdout
        listed = run_cli("agents", "list", "--json", *sd)
        assert [k["status"] for k in json.loads(listed.stdout)["keys"]] == ["approved"]
        # Rejections (by policy, by an operator) and cancellations, interleaved in the log.
        waiting = [
            _submit(sd, f"big-{i}", kind="agent", amount_msat=15_000_000, signing=signing)
            for i in range(3)
        ]
        # below the corridor minimum
        _submit(sd, "tiny-1", kind="service", amount_msat=500, signing=signing)
        cancelled = run_cli("cancel", waiting[0], *sd, "--caller-id", "watcher",
                            "--caller-kind", "agent", *signing)  # fmt: skip
        assert cancelled.returncode == 0, cancelled.stderr
        rejected = run_cli("reject", waiting[1], *sd, "--reason", "no")  # as operator-1
        assert rejected.returncode == 0, rejected.stderr
        cancelled = run_cli("cancel", waiting[2], *sd, "--caller-id", "watcher",
                            "--caller-kind", "agent", *signing)  # fmt: skip
        assert cancelled.returncode == 0, cancelled.stderr
        _submit(sd, "tiny-2", kind="service", amount_msat=500, signing=signing)

        log = [json.loads(line) for line in run_cli("replay", *sd).stdout.splitlines()]
        outcomes = [e for e in log if e["type"] in ("IntentRejected", "IntentCancelled")]
        assert [e["type"] for e in outcomes] == [
            "IntentRejected", "IntentCancelled", "IntentRejected", "IntentCancelled",
            "IntentRejected",
        ]  # fmt: skip

        watched = run_cli("watch", *sd, "--from-start", "--count", str(len(outcomes)))
        assert watched.returncode == 0, watched.stderr
        assert _positions(watched.stdout) == [e["position"] for e in outcomes]

        everything = run_cli("watch", *sd, "--all", "--from-start", "--count", str(len(log)))
        assert _positions(everything.stdout) == list(range(1, len(log) + 1))

        # As the agent `watcher` (a caller's credential): the events of its own intents, and
        # nobody else's, through the consumer its permissions pin to its subtree (ADR 0067).
        own = [e for e in log if e["stream_id"] in set(waiting)]
        as_agent = ["--creds", str(agent)]
        mine = run_cli("watch", *sd, *as_agent, "--all", "--from-start", "--count", str(len(own)))
        assert mine.returncode == 0, mine.stderr
        assert _positions(mine.stdout) == [e["position"] for e in own]
        own_outcomes = [e for e in outcomes if e["stream_id"] in set(waiting)]
        mine = run_cli("watch", *sd, *as_agent, "--from-start", "--count", str(len(own_outcomes)))
        assert _positions(mine.stdout) == [e["position"] for e in own_outcomes]
        assert len(own_outcomes) < len(outcomes)  # the caller `local`'s were there to leak

        # Resume: exactly from the given position, every event or outcomes only.
        middle = outcomes[2]["position"]
        resumed = run_cli("watch", *sd, "--all", "--from-position", str(middle), "--count", "3")
        assert _positions(resumed.stdout) == [middle, middle + 1, middle + 2]
        resumed = run_cli("watch", *sd, "--from-position", str(middle), "--count", "3")
        assert _positions(resumed.stdout) == [e["position"] for e in outcomes[2:]]
        # A position that is not an outcome: the next outcome after it.
        received = max(e["position"] for e in log if e["type"] == "IntentReceived")
        later = [e["position"] for e in outcomes if e["position"] > received]
        resumed = run_cli("watch", *sd, "--from-position", str(received), "--count", "1")
        assert _positions(resumed.stdout) == later[:1]


# -- stream sequence is not log position ------------------------------------------------------


async def _stream_with(nats_url: str, positions: list[int]) -> None:
    """CORRIDOR_EVT holding ``positions`` at sequences 1, 2, ...: what a relay leaves after
    re-publishing a tail (duplicates beyond JetStream's window), made by hand."""
    nc = await connect_as(nats_url)  # the session's engine credential
    try:
        js = nc.jetstream()
        await js.add_stream(name=subjects.EVT_STREAM, subjects=[subjects.EVT_WILDCARD])
        for seq, position in enumerate(positions, start=1):
            kind = "IntentRejected" if position % 2 else "IntentReceived"
            ack = await js.publish(
                f"{subjects.EVT_PREFIX}.intent.{kind}",
                json.dumps({"type": kind, "position": position}).encode(),
                headers={subjects.HDR_POSITION: str(position)},
            )
            assert ack.seq == seq
    finally:
        await nc.close()


async def _delete(nats_url: str, *seqs: int) -> None:
    nc = await connect_as(nats_url)
    try:
        for seq in seqs:
            await nc.jetstream().delete_msg(subjects.EVT_STREAM, seq)
    finally:
        await nc.close()


async def _watched(state_dir: Path, **options: Any) -> tuple[list[int], str]:
    out, err = io.StringIO(), io.StringIO()
    await asyncio.wait_for(watch(state_dir, out=out, err=err, **options), timeout=20)
    return _positions(out.getvalue()), err.getvalue()


@pytest.fixture
def state_dir(tmp_path: Path, nats_url: str) -> Path:
    add_entries(tmp_path, {"nats_url": nats_url})
    return tmp_path


REPUBLISHED = [1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8]  # 3..5 again after a relay outage


async def test_from_position_resumes_exactly_where_sequences_are_not_positions(
    nats_url: str, state_dir: Path
) -> None:
    await _stream_with(nats_url, REPUBLISHED)
    for start in (1, 3, 4, 6, 8):
        printed, err = await _watched(
            state_dir, all_events=True, from_position=start, count=9 - start
        )
        assert printed == list(range(start, 9)), start
        assert err == ""
    # Outcomes only (odd positions here): from 4 on, each once, in order.
    printed, _ = await _watched(state_dir, all_events=False, from_position=4, count=2)
    assert printed == [5, 7]
    # --from-start prints each position once: the re-published copies are skipped.
    printed, _ = await _watched(state_dir, all_events=True, from_start=True, count=8)
    assert printed == list(range(1, 9))


async def test_a_stream_that_lost_events_is_said_and_deleted_messages_are_skipped(
    nats_url: str, state_dir: Path
) -> None:
    await _stream_with(nats_url, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    await _delete(nats_url, 1, 2, 6)  # aged out at the head, one gone in the middle
    printed, _ = await _watched(state_dir, all_events=True, from_position=5, count=4)
    assert printed == [5, 7, 8, 9]
    printed, err = await _watched(state_dir, all_events=True, from_position=1, count=2)
    assert printed == [3, 4]
    assert "starts at position 3" in err and "corridor replay --from-position 1" in err
