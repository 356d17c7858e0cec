"""The ``corridor`` command line. User mistakes print one line, never a traceback.

Starting is cheap: this module and ``parser`` import only the standard library. A command's
handler (``"module:function"``, or a callable set by a plugin group) is imported when that
command runs, and an event loop (uvloop when installed) is started only for a coroutine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from services.cli import exit_codes
from services.cli.credentials import request_for, requested
from services.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    # Commands such as `up`, `demo` and `bench` run simulated lnd nodes (gRPC servers) in this
    # process and start nats-server and PostgreSQL as children: gRPC's fork handlers would run
    # in each child before its exec and can abort it (grpc/grpc#43055). No child of ours uses
    # gRPC, so the handlers are off. Set before anything imports grpc, which reads it once.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        # The credential the command's connections use (services/cli/credentials.py).
        with requested(request_for(args)):
            return _call(_handler(args), args)
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        # `corridor replay | head`: the reader left; that is not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return exit_codes.OK
    except Exception as exc:
        message, code = _one_line(exc)
        if message is None:
            raise
        print(f"corridor: error: {message}", file=sys.stderr)
        return code


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], Any]:
    handler = getattr(args, "handler", None)
    assert handler is not None, f"command {args.command} sets no handler"
    if isinstance(handler, str):
        module_name, _, function = handler.partition(":")
        handler = getattr(importlib.import_module(module_name), function)
    return handler  # type: ignore[no-any-return]


def _call(handler: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    result = handler(args)
    if inspect.iscoroutine(result):
        result = _run(result)
    return int(result or 0)


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _one_line(exc: Exception) -> tuple[str | None, int]:
    """The message and exit code for an error a user caused or can fix; ``None`` for a bug."""
    from services.cli.errors import CliError
    from services.endpoints import EndpointsLocked, StackNotFound
    from services.identity.nats_auth import CredentialFileError
    from services.identity.registry import InvalidCredential

    if isinstance(exc, CliError):
        return str(exc), exc.exit_code
    if isinstance(exc, CredentialFileError | InvalidCredential):
        return str(exc), exit_codes.USAGE
    if type(exc).__module__.startswith("services.bus"):
        from services.bus.jetstream import CredentialRefused

        if isinstance(exc, CredentialRefused):
            return str(exc), exit_codes.USAGE
    local_file_errors = FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError
    if isinstance(exc, StackNotFound | EndpointsLocked | local_file_errors):
        return str(exc), exit_codes.USAGE
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc}", exit_codes.USAGE
    if isinstance(exc, OSError | TimeoutError):
        return f"cannot reach the stack ({type(exc).__name__}: {exc})", exit_codes.USAGE
    if type(exc).__module__.startswith(("nats", "asyncpg")):
        return f"{type(exc).__module__.split('.')[0]}: {type(exc).__name__}: {exc}", (
            exit_codes.USAGE
        )
    return None, exit_codes.USAGE


if __name__ == "__main__":
    sys.exit(main())
