"""``corridor http``: serve the HTTP API alone, in front of a running stack (``corridor up``
serves it too, ADR 0174). It writes ``http_url`` into ``endpoints.json`` and removes it when it
stops."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

GROUP_HELP: Final = "serve the HTTP API (OpenAPI at /openapi.json) in front of a running stack"
# The gateway credential `corridor up` makes for its own API (ADR 0172).
GATEWAY_ID: Final = "http"


def register(subparsers: Any) -> None:
    from services.cli.parser import state_dir_option

    parser = subparsers.add_parser("http", help=GROUP_HELP, description=GROUP_HELP)
    state_dir_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--http-port", type=int, default=0, metavar="PORT", help="port (default: a free one)"
    )
    parser.set_defaults(handler="services.http.cli:run")


def gateway_creds(state_dir: Path) -> Path | None:
    """The gateway's seed in ``state_dir`` if there is one; else ``CORRIDOR_CREDS``."""
    from services.identity.nats_auth import seed_path

    path = seed_path(state_dir, "gateway", GATEWAY_ID)
    return path if path.exists() else None


async def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from services.endpoints import DEFAULT_STATE_DIR, add_entries, find_stack, remove_entries
    from services.http.server import serving
    from services.identity.registry import registry_path
    from services.logging import configure_logging
    from services.settings import load_settings

    configure_logging(load_settings().log_level, cache=True)

    state_dir = args.state_dir or DEFAULT_STATE_DIR
    stack = find_stack(state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serving(
        nats_url=stack.nats_url, database_url=stack.database_url,
        registry_file=registry_path(state_dir), creds=args.creds or gateway_creds(state_dir),
        host=args.host, port=args.http_port, state_dir=state_dir,
    ) as served:  # fmt: skip
        entries = {"http_url": served.url}
        add_entries(state_dir, entries)
        print(f"corridor HTTP API on {served.url} (OpenAPI: {served.url}/openapi.json)",
              flush=True)  # fmt: skip
        try:
            await stop.wait()
        finally:
            remove_entries(state_dir, entries)
    return 0
