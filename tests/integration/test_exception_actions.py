"""The exception queue's operator actions over real NATS, PostgreSQL, the engine and a
simulated lnd (gRPC), through the CLI's own handlers (issue 15, ADR 0161).

- ``reprocess`` asks the attempt's node and resolves only on its proof, with the node's record
  as evidence; reprocessing twice appends exactly the events of once; a node with no record
  changes nothing.
- ``resolve`` dispatches by kind: an in-doubt intent through ``ResolvePaymentIntent``, an
  anomaly through ``AcknowledgeAnomaly``, each under the operator's identity.
- ``reprocess`` of a reconciliation item re-runs its node's pass: the item a pass no longer
  finds closes once, and a second reprocess adds nothing.

No executor runs: the node's record is made by paying through the node directly, and outcomes
are reported as the node's executor would, so each exception is made on purpose.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from nats.aio.client import Client

from services.bootstrap import Engine
from services.cli.main import _handler
from services.cli.parser import build_parser
from services.eventstore.postgres import PostgresEventStore
from tests.integration.test_reconciliation import (  # noqa: F401 (fixtures)
    NODE,
    SimStack,
    dispatched,
    engine,
    pay_behind_our_back,
    recon_events,
    reconcile,
    report_outcome,
    sim,
)

OPERATOR = "op-1"
# structlog's console line: "2026-11-30 15:59:04 [warning  ] ..."
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


@pytest.fixture
def state_dir(sim: SimStack, nats_url: str, database_url: str) -> Iterator[Path]:  # noqa: F811
    """The sim's state dir, naming the stack too, as `corridor up` writes it."""
    path = sim.state_dir / "endpoints.json"
    endpoints = json.loads(path.read_text())
    path.write_text(json.dumps({**endpoints, "nats_url": nats_url, "database_url": database_url}))
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield sim.state_dir
    # ``reprocess`` points the logs at stderr, as the CLI does: here the captured one, closed
    # after the test. Later tests must not log into it (each line would cost a traceback).
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def corridor(state_dir: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """``corridor exceptions ARGV... --json`` in this process; its JSON output and exit code."""
    args = build_parser().parse_args(["exceptions", *argv, "--state-dir", str(state_dir), "--json"])
    capsys.readouterr()
    code = await _handler(args)(args)
    # Another test's leftover client may log to stdout here; the command's JSON is the rest.
    out = "".join(
        line for line in capsys.readouterr().out.splitlines(keepends=True)
        if not LOG_LINE.match(line)
    )  # fmt: skip
    return json.loads(out), code


def _act(*argv: str) -> list[str]:
    """An action's words, with the operator and every payment on the wire in the queue."""
    return [*argv, "--operator-id", OPERATOR, "--stuck-after-s", "0"]


async def types(store: PostgresEventStore, stream: str) -> list[str]:
    return [e.type for e in await store.read_stream(stream)]


async def test_reprocess_settles_on_the_nodes_proof_and_twice_is_once(
    engine: Engine,  # noqa: F811
    sim: SimStack,  # noqa: F811
    nc: Client,
    store: PostgresEventStore,
    state_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    intent_id, invoice = await dispatched(engine, sim, nc, "reprocess-settle")
    before = await types(store, intent_id)

    # The node has no record yet: nothing changes, and it says so.
    [unchanged], code = await corridor(state_dir, capsys, *_act("reprocess", intent_id))
    assert code == 0 and unchanged["action"] == "none", unchanged
    assert "no record" in unchanged["detail"]
    assert await types(store, intent_id) == before

    # The node paid it (its own record now proves it): reprocess settles with that proof.
    paid = await pay_behind_our_back(sim, invoice.bolt11)
    [once], code = await corridor(state_dir, capsys, *_act("reprocess", intent_id))
    assert code == 0 and once["action"] == "resolved", once
    after_once = await types(store, intent_id)
    assert after_once == [*before, "IntentResolved", "PaymentSucceeded", "IntentSettled"]
    history = await store.read_stream(intent_id)
    [resolved] = [e for e in history if e.type == "IntentResolved"]
    assert resolved.metadata["actor"] == f"operator:{OPERATOR}"
    record = json.loads(resolved.payload["evidence"])
    assert (record["node"], record["status"], record["preimage"]) == (
        NODE, "succeeded", invoice.preimage,
    )  # fmt: skip
    assert history[-1].payload["fee_msat"] == paid.fee_msat

    # Again: already final, so nothing is appended and it exits 0 saying so.
    [twice], code = await corridor(state_dir, capsys, *_act("reprocess", intent_id))
    assert code == 0 and twice["action"] == "none", twice
    assert await types(store, intent_id) == after_once


async def test_resolve_fails_an_in_doubt_intent_then_acknowledges_its_anomaly(
    engine: Engine,  # noqa: F811
    sim: SimStack,  # noqa: F811
    nc: Client,
    store: PostgresEventStore,
    state_dir: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    intent_id, invoice = await dispatched(engine, sim, nc, "resolve-anomaly")
    reply, code = await corridor(
        state_dir, capsys,
        *_act("resolve", intent_id, "--not-paid", "--reason", "lncli: no HTLC for the hash"),
    )  # fmt: skip
    assert code == 0 and reply["state"] == "failed", reply
    # The node reports a success after all: money moved against a failed intent.
    await report_outcome(nc, intent_id, "succeeded", payment_hash=invoice.payment_hash,
                         preimage=invoice.preimage, fee_msat=5)  # fmt: skip
    queue, _ = await corridor(state_dir, capsys, "list")
    assert [r["kind"] for r in queue if r["intent_id"] == intent_id] == ["anomaly"]

    evidence = tmp_path / "ticket.txt"
    evidence.write_text("refund sent to the payer, ticket 42")
    reply, code = await corridor(
        state_dir, capsys,
        *_act("resolve", intent_id, "--reason", "refunded", "--evidence", str(evidence)),
    )  # fmt: skip
    assert code == 0 and reply["ok"] and reply["state"] == "failed", reply
    last = (await store.read_stream(intent_id))[-1]
    assert last.type == "AnomalyAcknowledged"
    assert (last.payload["operator_id"], last.payload["reason"], last.payload["evidence"]) == (
        OPERATOR, "refunded", "refund sent to the payer, ticket 42",
    )  # fmt: skip
    assert last.metadata["actor"] == f"operator:{OPERATOR}"
    queue, _ = await corridor(state_dir, capsys, "list")
    assert [r for r in queue if r["intent_id"] == intent_id] == []
    shown, code = await corridor(state_dir, capsys, "show", intent_id)
    assert code == 0 and shown["exceptions"] == []
    actions = [(a["operator_id"], a["action"]) for a in shown["intent"]["operator_actions"]]
    assert actions == [(OPERATOR, "resolved not_paid"), (OPERATOR, "acknowledged anomaly")]


async def test_reprocess_of_a_reconciliation_item_reruns_its_pass_once(
    engine: Engine,  # noqa: F811
    sim: SimStack,  # noqa: F811
    nc: Client,
    store: PostgresEventStore,
    state_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, invoice = await dispatched(engine, sim, nc, "reprocess-item")
    # A pass with a 1 ms bound calls the attempt stuck; the stack's own bound does not.
    found = await reconcile(sim, store, nc, bound_ms=1, trip=False)
    assert found.new_items == 1
    key = f"stuck_in_flight:{invoice.payment_hash}"
    before = await types(store, f"reconciliation-{NODE}")

    [once], code = await corridor(state_dir, capsys, *_act("reprocess", key))
    assert code == 0 and (once["id"], once["action"]) == (key, "closed"), once
    after_once = await types(store, f"reconciliation-{NODE}")
    assert after_once == [*before, "ReconciliationMismatchResolved"]

    [twice], code = await corridor(state_dir, capsys, *_act("reprocess", key))
    assert code == 0 and twice["action"] == "none", twice
    assert await types(store, f"reconciliation-{NODE}") == after_once
    resolved = [e for e in await recon_events(store) if e.type.endswith("Resolved")]
    assert [e.payload["by"] for e in resolved] == ["reconciler"]
