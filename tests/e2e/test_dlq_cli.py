"""`corridor dlq list|replay|drop` against `corridor up` (ADR 0080; issue 13, finding 7).

The stack's real credentials: the operator's is the identity the audit record names; a caller's
credential may not touch the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats

from services.bus.jetstream import credential_options
from services.identity.nats_auth import seed_path
from tests.e2e.test_cli import run_cli, stack  # noqa: F401  (the fixture)


async def _publish_garbage(state_dir: Path) -> None:
    nats_url = json.loads((state_dir / "endpoints.json").read_text())["nats_url"]
    nc = await nats.connect(nats_url, **credential_options(seed_path(state_dir, "caller", "local")))
    try:
        await nc.jetstream().publish("corridor.cmd.v1.intents.submit.local", b"{not json")
    finally:
        await nc.drain()


def test_dlq_list_replay_drop_with_a_required_reason_audited_as_the_operator(stack) -> None:  # noqa: F811
    state_dir, _ = stack
    sd = ["--state-dir", str(state_dir)]
    empty = run_cli("dlq", "list", *sd)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.startswith("no dead letters")

    asyncio.run(_publish_garbage(state_dir))
    listed = {"entries": []}
    for _ in range(100):  # the engine dead-letters it asynchronously: ask until it shows
        listed = json.loads(run_cli("dlq", "list", *sd, "--json").stdout)
        if listed["entries"]:
            break
    (entry,) = listed["entries"]
    assert entry["error_code"] == "malformed_json"
    table = run_cli("dlq", "list", *sd).stdout.splitlines()
    assert table[0].split() == ["SEQ", "STORED", "FROM", "CODE", "WHY"]

    seq = str(entry["sequence"])
    no_reason = run_cli("dlq", "drop", *sd, seq)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    # A caller's credential is not let near the queue, even naming an operator: the server
    # refuses the publish.
    as_caller = run_cli(
        "dlq", "drop", *sd, seq, "--reason", "x", "--operator-id", "operator-1",
        "--creds", str(seed_path(state_dir, "caller", "local")),
    )  # fmt: skip
    assert as_caller.returncode != 0 and "does not let the credential" in as_caller.stderr

    dropped = run_cli("dlq", "drop", *sd, seq, "--reason", "garbage from a test client")
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.split() == [seq, "dropped"]
    again = run_cli("dlq", "replay", *sd, seq, "--reason", "too late")
    assert again.returncode == 1 and again.stdout.split() == [seq, "not_found"]

    replayed = run_cli("replay", *sd, "--stream", "dead-letters")
    assert replayed.returncode == 0, replayed.stderr
    (event,) = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert event["type"] == "DeadLetterDropped"
    assert event["data"]["operator_id"] == "operator-1"  # the credential's, from the subject
    assert event["data"]["reason"] == "garbage from a test client"
    assert event["metadata"]["actor"] == "operator:operator-1"
