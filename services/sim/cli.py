"""``corridor sim ...``: run the simulated network, inspect it, script faults.

``sim up`` serves every node over its real API and adds its entries (``nodes``,
``sim_control``) to ``DIR/endpoints.json``; it removes them, and only them, when it stops
(ADR 0020). The other commands find the running sim through that file: node endpoints for
``sim invoice``, the control socket for ``nodes``, ``payments`` and ``fault``.

Registering the group imports no part of the simulator (``corridor --help`` stays fast); each
command imports what it needs when it runs. Nothing here imports ``services.cli``: the CLI
loads this module by name, and the simulator does not depend on the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from services.endpoints import (
    DEFAULT_STATE_DIR,
    FILE_NAME,
    add_entries,
    read_endpoints_file,
    remove_entries,
)
from services.lightning.port import FailureReason

GROUP_HELP = "the simulated Lightning network: up, nodes, invoice, pay, payments, fault"
# The value of services.cli.exit_codes.USAGE (a unit test holds them equal): a user mistake,
# or no simulator to talk to.
EXIT_ERROR = 2
# The value of services.cli.exit_codes.REFUSED: `sim pay` answered, and the invoice is not
# paid (the payment failed, or was still in flight when --timeout-s ran out).
EXIT_NOT_PAID = 1
CONTROL_TIMEOUT_S = 10.0
# `sim pay` defaults: a fee limit that covers any route of the built-in topologies (their
# hubs charge 1 sat + 100 ppm), and a wait long enough for a slowed simulation.
PAY_MAX_FEE_MSAT_DEFAULT = 100_000
PAY_TIMEOUT_S_DEFAULT = 30.0


class SimCliError(Exception):
    """A user-facing problem: printed as one line, never a traceback."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = subparsers.add_parser("sim", help=GROUP_HELP, description=GROUP_HELP)
    commands = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="serve the simulated network until Ctrl-C/SIGTERM")
    _state_dir(up)
    up.add_argument("--topology", type=Path, metavar="FILE",
                    help="YAML or JSON topology (default: built-in map)")  # fmt: skip
    up.add_argument("--seed", type=int, default=1,
                    help="same seed, same keys and channel ids (default 1)")  # fmt: skip
    up.add_argument("--hop-delay-s", type=float, default=0.0, metavar="S",
                    help="HTLC time per hop, seconds (default 0)")  # fmt: skip
    up.add_argument("--block-interval-s", type=float, default=1.0, metavar="S",
                    help="mine a block every S seconds; 0 mines only on `sim mine` "
                         "(default 1)")  # fmt: skip
    up.set_defaults(handler=_handler(_up))

    nodes = commands.add_parser("nodes", help="list nodes: role, region, pubkey, endpoint")
    _state_dir(nodes)
    _json(nodes)
    nodes.set_defaults(handler=_handler(_nodes))

    invoice = commands.add_parser("invoice", help="ask a node (through its own API) for an invoice")
    _state_dir(invoice)
    invoice.add_argument("--node", required=True, help="the node that is paid (see `sim nodes`)")
    invoice.add_argument("--amount-msat", type=int, required=True, metavar="MSAT",
                         help="invoice amount, msat")  # fmt: skip
    invoice.add_argument("--memo", default="corridor sim", help="invoice description")
    invoice.add_argument("--expiry-s", type=int, default=3600, metavar="S",
                         help="seconds until the invoice expires (default 3600)")  # fmt: skip
    _json(invoice)
    invoice.set_defaults(handler=_handler(_invoice))

    pay = commands.add_parser(
        "pay", help="pay an invoice from an outside node (hub or merchant), as a customer would"
    )
    _state_dir(pay)
    pay.add_argument("--node", required=True,
                     help="the paying node: a hub or merchant (see `sim nodes`)")  # fmt: skip
    pay.add_argument("--payment-request", required=True, metavar="BOLT11",
                     help="the invoice to pay")  # fmt: skip
    pay.add_argument("--amount-msat", type=int, metavar="MSAT",
                     help="amount, msat: only for an invoice without one")  # fmt: skip
    pay.add_argument("--max-fee-msat", type=int, default=PAY_MAX_FEE_MSAT_DEFAULT,
                     metavar="MSAT",
                     help=f"fee limit, msat (default {PAY_MAX_FEE_MSAT_DEFAULT})")  # fmt: skip
    pay.add_argument("--timeout-s", type=float, default=PAY_TIMEOUT_S_DEFAULT, metavar="S",
                     help=f"outcome wait, seconds (default {PAY_TIMEOUT_S_DEFAULT:g})")  # fmt: skip
    _json(pay)
    pay.set_defaults(handler=_handler(_pay))

    payments = commands.add_parser("payments", help="ground truth: every payment the network saw")
    _state_dir(payments)
    _json(payments)
    payments.add_argument("--origin", metavar="NODE", help="only payments sent by this node")
    payments.set_defaults(handler=_handler(_payments))

    mine = commands.add_parser("mine", help="mine simulated blocks now (confirms channel txs)")
    _state_dir(mine)
    mine.add_argument("--blocks", type=int, default=1, metavar="N",
                      help="how many blocks (default 1)")  # fmt: skip
    _json(mine)
    mine.set_defaults(handler=_handler(_mine))

    fault = commands.add_parser("fault", help="make the network misbehave")
    kinds = fault.add_subparsers(
        dest="kind", required=True, metavar="{" + ",".join(FAULT_KINDS) + "}"
    )
    for kind, arguments, help_text in _FAULT_ARGUMENTS:
        parser = kinds.add_parser(kind, help=help_text, description=help_text)
        _state_dir(parser)
        for flags, options in arguments:
            parser.add_argument(*flags, **options)
        _json(parser)
        parser.set_defaults(handler=_handler(_fault))


_REASONS = [r.value for r in FailureReason]
_NODE = (("node",), {"metavar": "NODE", "help": "node name (see `corridor sim nodes`)"})
_ONLY_NODE = (("--node",), {"help": "only HTLCs through this node (default: all)"})
_FAULT_ARGUMENTS: list[tuple[str, list[tuple[tuple[str, ...], dict[str, Any]]], str]] = [
    ("offline", [_NODE], "take a node offline (RPC refused, channels inactive)"),
    ("online", [_NODE], "bring a node back"),
    ("drain", [(("channel_id",), {"metavar": "CHANNEL_ID", "help": "the channel to drain"}),
               (("--toward",), {"required": True, "metavar": "NODE",
                                "help": "the end that gets all the liquidity"})],
     "move all liquidity of a channel to one side"),
    ("delay", [(("seconds",), {"type": float, "help": "extra seconds per HTLC resolution"}),
               _ONLY_NODE],
     "delay HTLC resolutions (through NODE, or all)"),
    ("drop", [_ONLY_NODE,
              (("--count",), {"type": int, "default": 1,
                              "help": "how many resolutions to park (default 1)"}),
              (("--timeout-s",), {"type": float, "metavar": "S",
                                  "help": "fail parked HTLCs after S seconds (default: park "
                                          "until `fault release`)"})],
     "park the next HTLC resolutions (until release, or fail after --timeout-s)"),
    ("release", [], "resolve every parked HTLC"),
    ("fail-route", [(("--node",), {"help": "refuse to forward through this node"}),
                    (("--channel-id",), {"help": "refuse to forward over this channel"}),
                    (("--reason",), {"choices": _REASONS, "default": "no_route",
                                     "help": "the failure reported (default no_route)"})],
     "make a node or channel refuse to forward"),
    ("expire-invoice", [(("payment_hash",), {"metavar": "PAYMENT_HASH",
                                             "help": "the invoice's payment hash (hex)"})],
     "expire an invoice now"),
    ("slow", [_NODE, (("seconds",), {"type": float, "help": "added latency per RPC, seconds"})],
     "add latency to a node's RPC"),
    ("clear", [], "remove every fault rule, bring nodes online, release HTLCs"),
]  # fmt: skip
# Must equal services.sim.control.FAULT_KINDS (tests/sim/test_sim_cli.py checks): not imported
# here, because the control module pulls in the whole simulator.
FAULT_KINDS = tuple(kind for kind, _, _ in _FAULT_ARGUMENTS)


def _state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
        help=f"directory holding {FILE_NAME} (default {DEFAULT_STATE_DIR}/)",
    )  # fmt: skip


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON, as-is")


def _handler(command: Any) -> Any:
    """Wrap a command so user mistakes print one line and return exit code 2."""

    async def run(args: argparse.Namespace) -> int:
        from services.lightning.port import NodeError
        from services.sim.errors import SimError
        from services.sim.jsonrpc import RpcFailure

        try:
            result: int = await command(args)
            return result
        except (SimCliError, SimError, NodeError, RpcFailure) as exc:
            message = exc.message if isinstance(exc, RpcFailure) else str(exc)
            print(f"corridor sim: error: {message}", file=sys.stderr)
            return EXIT_ERROR

    return run


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A header row and padded columns (the CLI's own tables look the same)."""
    cells = [list(headers)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "".join(
        "  ".join([c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)] + [row[-1]])
        .rstrip() + "\n"
        for row in cells
    )  # fmt: skip


def _nodes_table(nodes: list[dict[str, Any]]) -> str:
    return _table(
        ["NAME", "IMPL", "ROLE", "REGION", "PUBKEY", "ENDPOINT"],
        [[n["name"], n["implementation"], n["role"], n["region"], n.get("pubkey"), n["endpoint"]]
         for n in nodes],
    )  # fmt: skip


# -- commands ---------------------------------------------------------------------------------


async def _up(args: argparse.Namespace) -> int:
    from services.sim.errors import TopologyError
    from services.sim.runner import SimStack

    try:
        stack = SimStack(
            state_dir=args.state_dir, topology_path=args.topology, seed=args.seed,
            hop_delay_s=args.hop_delay_s, block_interval_s=args.block_interval_s or None,
        )  # fmt: skip
    except TopologyError as exc:
        raise SimCliError(str(exc)) from None
    try:
        await stack.start()
    except (OSError, ValueError) as exc:
        await stack.stop()
        raise SimCliError(f"cannot start the simulated nodes: {exc}") from None
    entries = stack.endpoints()
    try:
        path = add_entries(args.state_dir, entries)
        sys.stdout.write(_nodes_table(stack.describe_nodes()))
        print(f"control: {stack.control_path}\nendpoints: {path}\nCtrl-C to stop", flush=True)
        await _until_signal()
    finally:
        # Only our own entries: the engine's (nats_url, ...) stay for its other users.
        remove_entries(args.state_dir, entries)
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
        sys.stdout.write(_nodes_table(nodes))
    return 0


async def _invoice(args: argparse.Namespace) -> int:
    from services.lightning.factory import adapter_from_uri

    if args.amount_msat <= 0:
        raise SimCliError("--amount-msat must be positive")
    node = await _node_entry(args.state_dir, args.node)
    adapter = adapter_from_uri(node["endpoint"], timeout_s=CONTROL_TIMEOUT_S)
    try:
        invoice = await adapter.create_invoice(args.amount_msat, args.memo, args.expiry_s)
    finally:
        await adapter.close()
    result = {"node": args.node, "payment_request": invoice.payment_request,
              "payment_hash": invoice.payment_hash, "amount_msat": invoice.amount_msat,
              "expiry_s": invoice.expiry_s}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        sys.stdout.write("".join(f"{k.replace('_', ' '):<{width}}  {v}\n"
                                 for k, v in result.items()))  # fmt: skip
    return 0


async def _pay(args: argparse.Namespace) -> int:
    """Pay through the outside node's own API (its LND gRPC or CLN JSON-RPC endpoint), with
    the same adapter Corridor's executors use: what a customer's wallet on that node does."""
    from services.lightning.factory import adapter_from_uri
    from services.lightning.port import PaymentFailed, PaymentInFlight, PaymentSucceeded, PayRequest

    statuses = {
        PaymentSucceeded: "succeeded",
        PaymentFailed: "failed",
        PaymentInFlight: "in_flight",
    }

    if args.amount_msat is not None and args.amount_msat <= 0:
        raise SimCliError("--amount-msat must be positive")
    if args.max_fee_msat < 0 or args.timeout_s <= 0:
        raise SimCliError("--max-fee-msat must be >= 0 and --timeout-s positive")
    node = await _node_entry(args.state_dir, args.node)
    if node["role"] == "ours":
        outside = [n["name"] for n in _endpoints(args.state_dir)["nodes"] if n["role"] != "ours"]
        raise SimCliError(
            f"{args.node} is one of our nodes; a customer pays from an outside node: "
            + ", ".join(outside)
        )
    request = PayRequest(
        payment_request=args.payment_request.strip(),
        amount_msat=args.amount_msat,
        max_fee_msat=args.max_fee_msat,
        timeout_s=args.timeout_s,
    )
    adapter = adapter_from_uri(node["endpoint"], timeout_s=CONTROL_TIMEOUT_S)
    try:
        with _logs_to_stderr():
            result = await adapter.pay(request)
    except ValueError as exc:  # not a usable invoice (InvoiceDecodeError is one)
        raise SimCliError(f"cannot pay that invoice: {exc}") from None
    finally:
        await adapter.close()
    shown: dict[str, Any] = {"node": args.node, "payment_hash": result.payment_hash,
                             "status": statuses[type(result)]}  # fmt: skip
    if isinstance(result, PaymentSucceeded):
        shown.update(amount_msat=result.amount_msat, fee_msat=result.fee_msat,
                     preimage=result.preimage)  # fmt: skip
    elif isinstance(result, PaymentFailed):
        shown.update(reason=result.reason.value, detail=result.detail)
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        width = max(len(k) for k in shown)
        sys.stdout.write("".join(f"{k.replace('_', ' '):<{width}}  {v}\n"
                                 for k, v in shown.items()))  # fmt: skip
    return 0 if isinstance(result, PaymentSucceeded) else EXIT_NOT_PAID


@contextlib.contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """The adapter logs each payment; stdout belongs to the result (--json is parsed). Only
    for this call: the caller's own logging stays as it was."""
    import structlog

    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    try:
        yield
    finally:
        structlog.configure(**saved)


async def _node_entry(state_dir: Path, name: str) -> dict[str, Any]:
    """The node's entry in endpoints.json, written at start; a node added since (a payee's
    wallet, ADR 0271) is asked of the running simulator."""
    for node in _endpoints(state_dir).get("nodes", []):
        if isinstance(node, dict) and node.get("name") == name:
            return node
    for node in await _control(state_dir, "nodes"):
        if isinstance(node, dict) and node.get("name") == name:
            return dict(node)
    raise SimCliError(f"unknown node {name!r} (see `corridor sim nodes`)")


async def _payments(args: argparse.Namespace) -> int:
    payments = await _control(args.state_dir, "payments", {"origin": args.origin})
    if args.json:
        print(json.dumps(payments, indent=2))
        return 0
    if not payments:
        print("no payments yet" + (f" from {args.origin}" if args.origin else ""))
        return 0
    rows = []
    for p in payments:
        outcome = p["status"] if p["status"] != "failed" else f"failed:{p['failure_reason']}"
        rows.append([p["attempt_id"], p["payment_hash"][:16], p["origin"], p["destination"],
                     p["amount_msat"], p["fee_msat"], outcome])  # fmt: skip
    sys.stdout.write(_table(
        ["ATTEMPT", "HASH", "ORIGIN", "DESTINATION", "AMOUNT_MSAT", "FEE_MSAT", "OUTCOME"], rows
    ))  # fmt: skip
    return 0


async def _mine(args: argparse.Namespace) -> int:
    result = await _control(args.state_dir, "mine", {"blocks": args.blocks})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"mined {args.blocks} block(s); height {result['height']}")
    return 0


# Namespace entries that are the CLI's own, not parameters of the fault.
_NOT_FAULT_PARAMS = {"state_dir", "handler", "command", "sim_command", "func", "json"}


async def _fault(args: argparse.Namespace) -> int:
    params = {k: v for k, v in vars(args).items() if k not in _NOT_FAULT_PARAMS}
    result = await _control(args.state_dir, "fault", params)
    if args.json:
        print(json.dumps(result))
    else:
        detail = result.get("result") if isinstance(result, dict) else result
        print(f"fault {args.kind}: done" + (f" ({json.dumps(detail)})" if detail else ""))
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
    from services.sim.jsonrpc import call_unix

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
    """``python -m services.sim.cli sim ...``: the group alone, as the main CLI runs it."""
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
