"""``corridor executor --region R --node URI``: run one region worker until Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from services.cli.exit_codes import USAGE as EXIT_USAGE

GROUP_HELP = "run a region executor paying dispatched intents through one node"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("executor", help=GROUP_HELP, description=GROUP_HELP)
    parser.add_argument(
        "--region", required=True, help="region whose work orders to pay (us, eu, ...)"
    )
    parser.add_argument(
        "--node",
        required=True,
        metavar="URI",
        help="lnd://host:port?tlscert=..&macaroon=.., cln://..., or sim://NAME",
    )
    parser.add_argument(
        "--node-name",
        help="the node's name in the corridor table "
        "(default: the sim name, or <region>-lnd / <region>-cln)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the stack's state directory, holding endpoints.json "
        "(default: NATS_URL, else .corridor/)",
    )
    parser.add_argument("--executor-id", help="this worker's id (default: region-node-host-pid)")
    parser.add_argument(
        "--creds",
        type=Path,
        metavar="FILE",
        help="the node's executor credential, an nkey seed file (default: CORRIDOR_CREDS, "
        "else STATE_DIR/auth/executor-NODE.nk as `corridor up` makes it)",
    )
    parser.add_argument(
        "--secret-file",
        type=Path,
        help="keysend secret shared by the node's workers "
        "(default STATE_DIR/executor-keysend.secret)",
    )
    parser.add_argument(
        "--jit-lsp",
        action="store_true",
        help="sell JIT channels on this node (LSPS2, ADR 0261): intercept HTLCs for sold "
        "SCIDs (also on for the nodes in the jit_lsp_nodes setting)",
    )
    parser.set_defaults(handler=_run)


async def _run(args: argparse.Namespace) -> int:
    # Imported here: the package and its runner pull in NATS and the node adapters, which
    # `corridor --help` must not pay for (ADR 0020).
    from services.endpoints import find_stack
    from services.executor.errors import NodeUriError
    from services.executor.runner import build_executor
    from services.logging import configure_logging
    from services.lsps.lsps2_server import menu_from_settings
    from services.settings import load_settings
    from services.signing.port import KeyFileError

    settings = load_settings()
    configure_logging(settings.log_level, cache=True)
    from services import tracing

    tracing.configure(settings.tracing_exporter)
    stack = find_stack(args.state_dir)
    try:
        executor = build_executor(
            nats_url=stack.nats_url,
            region=args.region,
            node_uri=args.node,
            state_dir=args.state_dir or settings.state_dir,
            executor_id=args.executor_id,
            node_name=args.node_name,
            secret_path=args.secret_file,
            duplicate_window_s=settings.jetstream_duplicate_window_s,
            creds=args.creds,
            jit_lsp_nodes=settings.jit_lsp_nodes,
            jit_lsp=args.jit_lsp,
            jit_menu=menu_from_settings(settings.jit_fee_menu),
        )
    except (NodeUriError, KeyFileError, ValueError) as exc:
        print(f"corridor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, executor.stop)
    # /metrics (this worker's payments), /healthz and /readyz (ADR 0153).
    from services.metrics.server import MetricsServer

    metrics = MetricsServer.start(host=settings.metrics_host, port=settings.metrics_port)
    print(f"executor metrics on {metrics.url}/metrics", file=sys.stderr, flush=True)
    try:
        await executor.run()
    finally:
        metrics.stop()
        await executor.close_node()
    return 0
