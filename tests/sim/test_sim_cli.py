"""``corridor sim`` commands against a running SimStack (on its own loop thread, like a
separate ``sim up`` process)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.sim import cli
from services.sim.runner import SimStack
from services.sim.topology import load_topology

SMALL_TOPOLOGY = Path(__file__).parents[2] / "services" / "sim" / "topologies" / "small.yaml"


class RunningStack:
    def __init__(self, state_dir: Path, *, block_interval_s: float | None = None) -> None:
        self.state_dir = state_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        # Blocks only on `sim mine` unless a test asks for the periodic miner.
        self.stack = SimStack(
            state_dir=state_dir,
            topology=load_topology(SMALL_TOPOLOGY),
            seed=4,
            block_interval_s=block_interval_s,
        )

    def __enter__(self) -> RunningStack:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.stack.start(), self.loop).result(timeout=30)
        (self.state_dir / "endpoints.json").write_text(
            json.dumps({"nats_url": "nats://keep-me", **self.stack.endpoints()})
        )
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.stack.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def running() -> Iterator[RunningStack]:
    state_dir = Path(tempfile.mkdtemp(prefix="cq", dir="/tmp"))
    try:
        with RunningStack(state_dir) as stack:
            yield stack
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["sim", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_endpoints_document_shape(running: RunningStack) -> None:
    document = running.stack.endpoints()
    assert set(document) == {"nodes", "sim_control"}
    names = {n["name"] for n in document["nodes"]}
    assert names == {"us-lnd", "us-cln", "hub-us", "merchant-01", "merchant-02"}
    for node in document["nodes"]:
        assert set(node) == {"name", "role", "region", "implementation", "endpoint", "pubkey"}
        assert node["endpoint"].startswith(f"{node['implementation']}://")
    assert Path(document["sim_control"]).exists()


def test_nodes_invoice_fault_and_payments(
    running: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    sd = str(running.state_dir)
    code, out, _ = run_cli(capsys, "nodes", "--json", "--state-dir", sd)
    assert code == 0 and {n["name"] for n in json.loads(out)} >= {"us-cln", "merchant-02"}

    code, out, _ = run_cli(capsys, "nodes", "--state-dir", sd)
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "IMPL", "ROLE", "REGION", "PUBKEY", "ENDPOINT"]
    pubkeys = {n["name"]: n["pubkey"] for n in running.stack.describe_nodes()}
    assert {row.split()[0]: row.split()[4] for row in rows} == pubkeys  # keysend needs them

    code, out, _ = run_cli(capsys, "payments", "--state-dir", sd)
    assert code == 0 and out.startswith("no payments yet")

    code, out, _ = run_cli(
        capsys, "invoice", "--node", "merchant-02", "--amount-msat", "21000", "--state-dir", sd,
        "--json",
    )  # fmt: skip
    assert code == 0
    invoice = json.loads(out)
    network = running.stack.network
    stored = network.lookup_invoice("merchant-02", invoice["payment_hash"])
    assert stored is not None and stored.amount_msat == 21000

    code, out, _ = run_cli(capsys, "fault", "offline", "merchant-02", "--state-dir", sd)
    assert code == 0 and not network.is_online("merchant-02")
    code, _, err = run_cli(
        capsys, "invoice", "--node", "merchant-02", "--amount-msat", "1", "--state-dir", sd
    )
    assert code == 2 and "unreachable" in err and "Traceback" not in err
    code, _, _ = run_cli(capsys, "fault", "slow", "us-cln", "0.2", "--state-dir", sd)
    assert code == 0 and network.faults.latency_for("us-cln") == 0.2
    code, _, _ = run_cli(
        capsys, "fault", "fail-route", "--node", "hub-us", "--reason", "timeout", "--state-dir", sd
    )
    assert code == 0 and network.faults.fail_rules
    code, _, _ = run_cli(capsys, "fault", "clear", "--state-dir", sd)
    assert code == 0 and network.is_online("merchant-02") and not network.faults.fail_rules

    started = asyncio.run_coroutine_threadsafe(
        network.send_payment(
            "us-cln", payment_request=invoice["payment_request"], max_fee_msat=10_000, timeout_s=5
        ),
        running.loop,
    ).result(timeout=10)
    asyncio.run_coroutine_threadsafe(
        network.wait_payment("us-cln", started.payment_hash, 5), running.loop
    ).result(timeout=10)
    code, out, _ = run_cli(capsys, "payments", "--json", "--state-dir", sd)
    (payment,) = json.loads(out)
    assert payment["payment_hash"] == invoice["payment_hash"] and payment["status"] == "succeeded"
    code, out, _ = run_cli(capsys, "payments", "--state-dir", sd)
    header, row = out.splitlines()
    assert header.split() == [
        "ATTEMPT", "HASH", "ORIGIN", "DESTINATION", "AMOUNT_MSAT", "FEE_MSAT", "OUTCOME"
    ]  # fmt: skip
    assert row.split()[2:4] == ["us-cln", "merchant-02"] and row.split()[-1] == "succeeded"


def test_fault_kinds_registered_are_the_control_socket_s() -> None:
    from services.sim.control import FAULT_KINDS

    assert cli.FAULT_KINDS == FAULT_KINDS


def test_user_mistakes_are_one_line(
    running: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    sd = str(running.state_dir)
    code, _, err = run_cli(capsys, "fault", "offline", "nobody", "--state-dir", sd)
    assert code == 2 and err.strip() == "corridor sim: error: unknown node 'nobody'"
    code, _, err = run_cli(
        capsys, "fault", "drain", "1x1x1", "--toward", "us-cln", "--state-dir", sd
    )
    assert code == 2 and "unknown channel" in err
    code, _, err = run_cli(
        capsys, "invoice", "--node", "ghost", "--amount-msat", "5", "--state-dir", sd
    )
    assert code == 2 and "unknown node" in err
    code, _, err = run_cli(capsys, "nodes", "--state-dir", "/nonexistent-corridor")
    assert code == 2 and "corridor sim up" in err


def test_up_writes_endpoints_without_clobbering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="cu", dir="/tmp"))
    try:
        (state_dir / "endpoints.json").write_text(json.dumps({"nats_url": "nats://keep-me"}))

        async def scenario() -> int:
            args = cli_parser().parse_args(
                [
                    "sim",
                    "up",
                    "--state-dir",
                    str(state_dir),
                    "--topology",
                    str(SMALL_TOPOLOGY),
                    "--seed",
                    "9",
                ]
            )
            task = asyncio.create_task(args.handler(args))
            path = state_dir / "endpoints.json"
            deadline = asyncio.get_running_loop().time() + 20
            while "sim_control" not in json.loads(path.read_text()):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            data = json.loads(path.read_text())
            assert data["nats_url"] == "nats://keep-me" and len(data["nodes"]) == 5
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does; the handler stops cleanly
            return int(await task)

        assert asyncio.run(scenario()) == 0
        out = capsys.readouterr().out
        assert "control:" in out
        assert any(line.split()[:2] == ["NAME", "IMPL"] for line in out.splitlines())
        # Stopped: its own entries are gone, the engine's stay (ADR 0020).
        assert json.loads((state_dir / "endpoints.json").read_text()) == {
            "nats_url": "nats://keep-me"
        }
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def test_up_with_a_bad_topology_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [{name: a}]\nchannels: []\n")
    code, _, err = run_cli(capsys, "up", "--topology", str(bad), "--state-dir", str(tmp_path))
    assert code == 2 and err.startswith("corridor sim: error: invalid topology")


def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corridor")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_mine_adds_blocks_the_nodes_report(
    running: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    sd = str(running.state_dir)
    start = running.stack.network.block_height
    code, out, _ = run_cli(capsys, "mine", "--blocks", "3", "--json", "--state-dir", sd)
    assert code == 0 and json.loads(out) == {"height": start + 3}
    code, out, _ = run_cli(capsys, "mine", "--state-dir", sd)
    assert code == 0 and out.strip() == f"mined 1 block(s); height {start + 4}"
    code, _, err = run_cli(capsys, "mine", "--blocks", "0", "--state-dir", sd)
    assert code == cli.EXIT_ERROR and "blocks must be within" in err


def test_a_served_sim_mines_on_its_own() -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="cq", dir="/tmp"))
    try:
        with RunningStack(state_dir, block_interval_s=0.01) as running:
            start = running.stack.network.block_height
            deadline_s = time.monotonic() + 10
            while running.stack.network.block_height < start + 2:
                assert time.monotonic() < deadline_s, "no block mined within 10 s"
                time.sleep(0.01)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
