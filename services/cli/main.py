"""The ``corridor`` command line. User mistakes print one line, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from services.cli import commands
from services.cli.endpoints import StackNotFound
from services.logging import configure_logging
from services.settings import load_settings

EXIT_REFUSED = 1
EXIT_USAGE = 2


def _state_dir(parser: argparse.ArgumentParser, default: Path | None = None) -> None:
    parser.add_argument(
        "--state-dir", type=Path, default=default,
        help="directory holding endpoints.json (default .corridor/, or NATS_URL/DATABASE_URL)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corridor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run servers, engine and simulated network until Ctrl-C")
    _state_dir(up, Path(".corridor"))
    up.add_argument("--no-sim", action="store_true", help="do not start the simulated network")
    up.add_argument("--topology", type=Path, help="simulated network topology file")
    up.add_argument("--seed", type=int, default=1)

    submit = sub.add_parser("submit", help="submit a payment intent and print the reply")
    _state_dir(submit)
    submit.add_argument("--json", help="read the whole command from FILE ('-' for stdin)")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--caller-id")
    submit.add_argument("--caller-kind", choices=["human", "agent", "service"], default="service")
    submit.add_argument("--corridor", default="us-eu")
    submit.add_argument("--amount-msat", type=int)
    submit.add_argument("--max-fee-msat", type=int, default=0)
    submit.add_argument("--payment-request")
    submit.add_argument("--destination")
    submit.add_argument("--deadline-s", type=int)
    submit.add_argument("--metadata", nargs="*", metavar="KEY=VALUE")

    get = sub.add_parser("get", help="print an intent's state and full history")
    _state_dir(get)
    get.add_argument("intent_id")

    for verb in ("approve", "reject"):
        p = sub.add_parser(verb, help=f"{verb} an intent waiting for approval (operator)")
        _state_dir(p)
        p.add_argument("intent_id")
        p.add_argument("--operator-id", required=True)
        p.add_argument("--reason" if verb == "reject" else "--note", default="")

    cancel = sub.add_parser("cancel", help="cancel an intent that is not dispatched yet")
    _state_dir(cancel)
    cancel.add_argument("intent_id")
    cancel.add_argument("--caller-id", required=True)
    cancel.add_argument("--caller-kind", choices=["human", "agent", "service"], default="service")
    cancel.add_argument("--reason", default="")

    watch = sub.add_parser("watch", help="print settlement events as JSON lines")
    _state_dir(watch)
    watch.add_argument("--all", action="store_true", help="every event, not only outcomes")
    watch.add_argument("--from-start", action="store_true", help="start at the first event")
    watch.add_argument("--count", type=int, help="exit after N events")

    replay = sub.add_parser("replay", help="print the event log as JSON lines (audits)")
    _state_dir(replay)
    replay.add_argument("--from-position", type=int, default=1)
    replay.add_argument("--stream", help="only this stream (intent id)")
    replay.add_argument("--out", type=Path, help="write to FILE instead of stdout")
    replay.add_argument("--verify", action="store_true", help="verify the hash chain too")

    exceptions = sub.add_parser("exceptions", help="the operator exception queue")
    _state_dir(exceptions)
    exceptions.add_argument("--stuck-after-s", type=int, default=120,
                            help="a payment on the wire longer than this is in doubt")  # fmt: skip
    exceptions.add_argument("--json", action="store_true", help="print JSON")

    corridors = sub.add_parser("corridors", help="list the corridors in force and their routes")
    corridors.add_argument("--json", action="store_true", help="print JSON")

    for register in _plugins():
        register(sub)
    return parser


def _plugins() -> list[Any]:
    """Command groups owned by other packages (simulator, executors, demo, bench)."""
    found = []
    for module_name in ("services.sim.cli", "services.executor.cli", "services.policy.cli",
                        "services.demo.cli", "services.bench.cli"):  # fmt: skip
        try:
            module = __import__(module_name, fromlist=["register"])
        except ImportError:
            continue
        found.append(module.register)
    return found


def _print_reply(reply: dict[str, Any]) -> int:
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else EXIT_REFUSED


async def _dispatch(args: argparse.Namespace) -> int:
    sd: Path | None = getattr(args, "state_dir", None)
    match args.command:
        case "up":
            from services.cli.up import run_up

            settings = load_settings()
            configure_logging(settings.log_level, cache=True)
            await run_up(
                settings, state_dir=args.state_dir, sim=not args.no_sim, topology=args.topology,
                seed=args.seed,
            )  # fmt: skip
            return 0
        case "submit":
            if not args.json:
                missing = [n for n in ("idempotency_key", "caller_id", "amount_msat")
                           if getattr(args, n) is None]  # fmt: skip
                if missing:
                    raise UsageError(
                        "missing " + ", ".join("--" + m.replace("_", "-") for m in missing)
                    )
            body = commands.submit_body(args)
            caller = body.get("caller", {}).get("id") if isinstance(body, dict) else None
            if not isinstance(caller, str) or not caller:
                raise UsageError("the command has no caller.id (it names the submit subject)")
            return _print_reply(
                await commands.request(sd, f"corridor.api.v1.intents.submit.{caller}", body)
            )
        case "get":
            body = {"type": "GetPaymentIntent", "version": 1, "intent_id": args.intent_id}
            return _print_reply(await commands.request(sd, "corridor.api.v1.intents.get", body))
        case "approve" | "reject":
            body = {
                "type": f"{args.command.capitalize()}PaymentIntent", "version": 1,
                "intent_id": args.intent_id, "operator_id": args.operator_id,
            }  # fmt: skip
            body["reason" if args.command == "reject" else "note"] = (
                args.reason if args.command == "reject" else args.note
            )
            subject = f"corridor.api.v1.intents.{args.command}.{args.operator_id}"
            return _print_reply(await commands.request(sd, subject, body))
        case "cancel":
            body = {
                "type": "CancelPaymentIntent", "version": 1, "intent_id": args.intent_id,
                "caller": {"id": args.caller_id, "kind": args.caller_kind}, "reason": args.reason,
            }  # fmt: skip
            subject = f"corridor.api.v1.intents.cancel.{args.caller_id}"
            return _print_reply(await commands.request(sd, subject, body))
        case "exceptions":
            rows = await commands.exceptions(sd, stuck_after_s=args.stuck_after_s)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for row in rows:
                    print(f"{row['intent_id']}  {row['kind']:<16} {row['detail']}")
            return 0
        case "corridors":
            return _print_corridors(as_json=args.json)
        case "watch":
            await commands.watch(
                sd, all_events=args.all, from_start=args.from_start, count=args.count
            )
            return 0
        case "replay":
            out = args.out.open("w") if args.out else sys.stdout
            try:
                return await commands.replay(
                    sd, from_position=args.from_position, stream=args.stream, out=out,
                    verify=args.verify,
                )  # fmt: skip
            finally:
                if args.out:
                    out.close()
    handler = getattr(args, "handler", None)
    if handler is not None:
        result = handler(args)
        if asyncio.iscoroutine(result):
            result = await result
        return int(result or 0)
    raise UsageError(f"unknown command {args.command}")


def _print_corridors(*, as_json: bool) -> int:
    from services.bootstrap import corridor_table

    settings = load_settings()
    table = corridor_table(
        settings.corridors, keysend_unsupported=settings.keysend_unsupported_nodes
    )
    rows: list[dict[str, Any]] = [
        {
            "corridor": name,
            "candidates": [
                {"rank": rank, "region": c.region, "node": c.node, "keysend": c.keysend}
                for rank, c in enumerate(candidates, start=1)
            ],
        }
        for name, candidates in sorted(table.corridors.items())
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        route = " -> ".join(f"{c['region']}/{c['node']}" for c in row["candidates"])
        print(f"{row['corridor']:<12} {route}")
    return 0


class UsageError(Exception):
    pass


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_run(_dispatch(args)))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `corridor replay | head`: the reader left; that is not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except (UsageError, StackNotFound, FileNotFoundError, json.JSONDecodeError) as exc:
        print(f"corridor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, TimeoutError) as exc:
        print(f"corridor: error: cannot reach the stack ({type(exc).__name__}: {exc})",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    except Exception as exc:
        if type(exc).__module__.startswith("nats"):
            print(f"corridor: error: NATS: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
