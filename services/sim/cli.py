"""``corridor sim ...``: run the simulated network, inspect it, script faults.

``sim up`` serves every node over its real API and writes ``DIR/endpoints.json`` (merged into
what is there). The other commands find the running sim through that file: node endpoints for
``sim invoice``, the control socket for ``nodes``, ``payments`` and ``fault``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from services.cli.endpoints import FILE_NAME, read_endpoints_file, write_endpoints
from services.lightning.factory import adapter_from_uri
from services.lightning.port import FailureReason, NodeError
from services.sim.control import FAULT_KINDS
from services.sim.errors import SimError
from services.sim.jsonrpc import RpcFailure, call_unix

DEFAULT_STATE_DIR = Path(".corridor")
EXIT_ERROR = 2
CONTROL_TIMEOUT_S = 10.0


class SimCliError(Exception):
    """A user-facing problem: printed as one line, never a traceback."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = subparsers.add_parser("sim", help="simulated Lightning network")
    commands = sim.add_subparsers(dest="sim_command", required=True)

    up = commands.add_parser("up", help="serve the simulated network until Ctrl-C/SIGTERM")
    _state_dir(up)
    up.add_argument("--topology", type=Path, help="YAML or JSON topology (default: built-in map)")
    up.add_argument("--seed", type=int, default=1, help="same seed, same keys and channel ids")
    up.add_argument("--hop-delay-s", type=float, default=0.0, help="HTLC time per hop")
    up.set_defaults(handler=_handler(_up))

    nodes = commands.add_parser("nodes", help="list nodes and their endpoints")
    _state_dir(nodes)
    nodes.add_argument("--json", action="store_true", help="machine-readable output")
    nodes.set_defaults(handler=_handler(_nodes))

    invoice = commands.add_parser("invoice", help="ask a node (through its own API) for an invoice")
    _state_dir(invoice)
    invoice.add_argument("--node", required=True)
    invoice.add_argument("--amount-msat", type=int, required=True)
    invoice.add_argument("--memo", default="corridor sim")
    invoice.add_argument("--expiry-s", type=int, default=3600)
    invoice.set_defaults(handler=_handler(_invoice))

    payments = commands.add_parser("payments", help="ground truth: every payment the network saw")
    _state_dir(payments)
    payments.add_argument("--json", action="store_true", help="machine-readable output")
    payments.add_argument("--origin", help="only payments sent by this node")
    payments.set_defaults(handler=_handler(_payments))

    fault = commands.add_parser("fault", help="make the network misbehave")
    kinds = fault.add_subparsers(
        dest="kind", required=True, metavar="{" + ",".join(FAULT_KINDS) + "}"
    )
    for kind, arguments, help_text in _FAULT_ARGUMENTS:
        parser = kinds.add_parser(kind, help=help_text)
        _state_dir(parser)
        for flags, options in arguments:
            parser.add_argument(*flags, **options)
        parser.set_defaults(handler=_handler(_fault))


_REASONS = [r.value for r in FailureReason]
_FAULT_ARGUMENTS: list[tuple[str, list[tuple[tuple[str, ...], dict[str, Any]]], str]] = [
    ("offline", [(("node",), {})], "take a node offline (RPC refused, channels inactive)"),
    ("online", [(("node",), {})], "bring a node back"),
    ("drain", [(("channel_id",), {}), (("--toward",), {"required": True})],
     "move all liquidity of a channel to one side"),
    ("delay", [(("seconds",), {"type": float}), (("--node",), {})],
     "delay HTLC resolutions (through NODE, or all)"),
    ("drop", [(("--node",), {}), (("--count",), {"type": int, "default": 1}),
              (("--timeout-s",), {"type": float})],
     "park the next HTLC resolutions (until release, or fail after --timeout-s)"),
    ("release", [], "resolve every parked HTLC"),
    ("fail-route", [(("--node",), {}), (("--channel-id",), {}),
                    (("--reason",), {"choices": _REASONS, "default": "no_route"})],
     "make a node or channel refuse to forward"),
    ("expire-invoice", [(("payment_hash",), {})], "expire an invoice now"),
    ("slow", [(("node",), {}), (("seconds",), {"type": float})], "add latency to a node's RPC"),
    ("clear", [], "remove every fault rule, bring nodes online, release HTLCs"),
]  # fmt: skip
assert tuple(k for k, _, _ in _FAULT_ARGUMENTS) == FAULT_KINDS


def _node_line(node: dict[str, Any]) -> str:
    region = node["region"] or "-"
    return (
        f"{node['name']:<14} {node['implementation']:<4} {node['role']:<9} {region:<5} "
        f"{node['endpoint']}"
    )


def _state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR,
        help=f"directory holding {FILE_NAME} (default {DEFAULT_STATE_DIR}/)",
    )  # fmt: skip


def _handler(command: Any) -> Any:
    """Wrap a command so user mistakes print one line and return exit code 2."""

    async def run(args: argparse.Namespace) -> int:
        try:
            result: int = await command(args)
            return result
        except (SimCliError, SimError, NodeError, RpcFailure) as exc:
            print(f"corridor sim: error: {_message(exc)}", file=sys.stderr)
            return EXIT_ERROR

    return run


def _message(exc: Exception) -> str:
    if isinstance(exc, RpcFailure):
        return exc.message
    return str(exc)


# -- commands ---------------------------------------------------------------------------------


async def _up(args: argparse.Namespace) -> int:
    from services.sim.errors import TopologyError
    from services.sim.runner import SimStack

    try:
        stack = SimStack(
            state_dir=args.state_dir, topology_path=args.topology, seed=args.seed,
            hop_delay_s=args.hop_delay_s,
        )  # fmt: skip
    except TopologyError as exc:
        raise SimCliError(str(exc)) from None
    try:
        await stack.start()
    except (OSError, ValueError) as exc:
        await stack.stop()
        raise SimCliError(f"cannot start the simulated nodes: {exc}") from None
    try:
        path = write_endpoints(args.state_dir, stack.endpoints())
        for node in stack.describe_nodes():
            print(_node_line(node))
        print(f"control: {stack.control_path}\nendpoints: {path}\nCtrl-C to stop", flush=True)
        await _until_signal()
    finally:
        await stack.stop()
    return 0


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


async def _nodes(args: argparse.Namespace) -> int:
    nodes = await _control(args.state_dir, "nodes")
    if args.json:
        print(json.dumps(nodes, indent=2))
    else:
        for node in nodes:
            print(_node_line(node))
    return 0


async def _invoice(args: argparse.Namespace) -> int:
    if args.amount_msat <= 0:
        raise SimCliError("--amount-msat must be positive")
    node = next(
        (n for n in _endpoints(args.state_dir).get("nodes", []) if n["name"] == args.node), None
    )
    if node is None:
        raise SimCliError(f"unknown node {args.node!r} (see `corridor sim nodes`)")
    adapter = adapter_from_uri(node["endpoint"], timeout_s=CONTROL_TIMEOUT_S)
    try:
        invoice = await adapter.create_invoice(args.amount_msat, args.memo, args.expiry_s)
    finally:
        await adapter.close()
    print(json.dumps({"node": args.node, "payment_request": invoice.payment_request,
                      "payment_hash": invoice.payment_hash, "amount_msat": invoice.amount_msat,
                      "expiry_s": invoice.expiry_s}, indent=2))  # fmt: skip
    return 0


async def _payments(args: argparse.Namespace) -> int:
    payments = await _control(args.state_dir, "payments", {"origin": args.origin})
    if args.json:
        print(json.dumps(payments, indent=2))
    else:
        for p in payments:
            outcome = p["status"] if p["status"] != "failed" else f"failed:{p['failure_reason']}"
            print(
                f"{p['attempt_id']:>5} {p['payment_hash'][:16]} {p['origin']:>12} -> "
                f"{p['destination']:<12} {p['amount_msat']:>14} msat "
                f"fee {p['fee_msat']:>8} {outcome}"
            )
    return 0


async def _fault(args: argparse.Namespace) -> int:
    params = {k: v for k, v in vars(args).items()
              if k not in {"state_dir", "handler", "command", "sim_command", "func"}}  # fmt: skip
    result = await _control(args.state_dir, "fault", params)
    print(json.dumps(result))
    return 0


def _endpoints(state_dir: Path) -> dict[str, Any]:
    path = state_dir / FILE_NAME
    if not path.exists():
        raise SimCliError(
            f"no running simulator: {path} not found (start one with `corridor sim up`)"
        )
    try:
        return read_endpoints_file(path)
    except (ValueError, OSError) as exc:
        raise SimCliError(f"cannot read {path}: {exc}") from None


async def _control(state_dir: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    control = _endpoints(state_dir).get("sim_control")
    if not control:
        raise SimCliError(f"{state_dir / FILE_NAME} names no sim_control socket")
    try:
        return await call_unix(Path(control), method, params or {}, timeout_s=CONTROL_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise SimCliError(
            f"simulator not reachable at {control} ({type(exc).__name__}); "
            "is `corridor sim up` running?"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """``python -m services.sim.cli sim ...`` until the main CLI is wired."""
    parser = argparse.ArgumentParser(prog="corridor")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(asyncio.run(args.handler(args)))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `... | head`: the reader left; that is not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


if __name__ == "__main__":
    sys.exit(main())
