"""`corridor lsp` against `corridor up` with an external LSP in the simulated network (issue
19, ADR 0251, 0252): `info` shows its LSPS1 options (asked by the us executor), `order` sends
the order to the engine, which the us executor carries out and the engine pays as an ordinary
intent of the local caller; the same key follows the same order, `get` shows it completed
with its events. The CLI holds neither the database nor a node."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from services.sim.topology import ChannelSpec, NodeSpec, Topology, default_topology
from tests.e2e.test_cli import CORRIDOR, REPO, _env, _wait_for_file, run_cli


@pytest.fixture
def stack_with_lsp(tmp_path: Path) -> Iterator[Path]:
    base = default_topology()
    topology = Topology(
        nodes=(*base.nodes, NodeSpec(name="lsp-1", role="lsp")),
        channels=(
            *base.channels,
            ChannelSpec(a="lsp-1", b="hub-us", capacity_msat=100_000_000_000),
            ChannelSpec(a="hub-us", b="lsp-1", capacity_msat=100_000_000_000),
        ),
        network=base.network,
    )
    topology_file = tmp_path / "lsp.json"
    topology_file.write_bytes(msgspec.json.encode(topology))
    state_dir = tmp_path / "state"
    proc = subprocess.Popen(
        [*CORRIDOR, "up", "--state-dir", str(state_dir), "--topology", str(topology_file)],
        cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        endpoints = state_dir / "endpoints.json"
        _wait_for_file(endpoints, proc)
        deadline = time.monotonic() + 60
        while "nodes" not in json.loads(endpoints.read_text()):
            assert proc.poll() is None, "corridor up died"
            assert time.monotonic() < deadline, "the simulated network did not come up"
            time.sleep(0.05)
        yield state_dir
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def test_corridor_lsp_info_order_and_get(stack_with_lsp: Path) -> None:
    sd = ["--state-dir", str(stack_with_lsp)]
    info = run_cli("lsp", "info", *sd, "--region", "us", "--lsp", "lsp-1", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["max_initial_lsp_balance_sat"] == "10000000"

    ask = ["lsp", "order", *sd, "--region", "us", "--lsp", "lsp-1", "--lsp-balance-sat",
           "2000000", "--max-fee-sat", "10000", "--idempotency-key", "cli-1", "--json"]  # fmt: skip
    ordered = run_cli(*ask)
    assert ordered.returncode == 0, ordered.stderr
    order = json.loads(ordered.stdout)
    assert order["status"] == "completed", order
    assert order["funding_outpoint"] and order["payment_intent_id"]

    again = json.loads(run_cli(*ask).stdout)
    assert again["lsp_order_id"] == order["lsp_order_id"] and again["status"] == "completed"
    got = run_cli("lsp", "get", *sd, order["lsp_order_id"], "--json")
    assert got.returncode == 0, got.stderr
    view = json.loads(got.stdout)
    assert view["events"] == [
        "LspOrderRequested",
        "LspOrderCreated",
        "LspOrderPaymentRequested",
        "LspOrderPaid",
        "LspOrderCompleted",
    ]
    assert view["exceptions"] == []

    # An order left open by `order` (no waiting) is run to its end by the region's executor;
    # `lsp run` is gone and says so.
    quick = [*ask[:-3], "--idempotency-key", "cli-2", "--wait-s", "0", "--json"]
    left = json.loads(run_cli(*quick).stdout)
    assert left["status"] in ("requested", "paying", "paid", "completed"), left
    ran = run_cli("lsp", "run", *sd, "--region", "us", "--once")
    assert ran.returncode == 0 and "no longer needed" in ran.stderr, ran.stderr
    deadline = time.monotonic() + 60
    while True:
        view = json.loads(run_cli("lsp", "get", *sd, left["lsp_order_id"], "--json").stdout)
        if view["status"] == "completed":
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)  # a poll of the CLI with a deadline
