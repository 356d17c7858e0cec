"""``submit``, ``get``, ``approve``/``reject``, ``resolve`` and ``cancel``: payment intents,
through the engine.

Each prints the engine's reply readably, or as-is with ``--json``; a refusal ends with
``exit_codes.REFUSED``. The request subject's last token is the id of the credential the command
connected with (the only one the server lets it publish under, ADR 0060); ``--caller-id`` and
``--operator-id`` name the payload's principal, which defaults to that same id.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.bus import subjects
from services.cli import exit_codes, output
from services.cli.engine import EngineClient, describe_error, fee_cap_msat
from services.cli.errors import UsageError

_REQUIRED_WITHOUT_FILE = ("idempotency_key", "amount_msat")
# Flags that build the command; --file sends a whole command instead, so they would be ignored.
_BODY_FLAGS = (*_REQUIRED_WITHOUT_FILE, "caller_id", "max_fee_msat", "payment_request",
               "destination", "deadline_s", "metadata")  # fmt: skip
_CALLER_ROLES = ("caller", "agent")
_OPERATOR_ROLES = ("operator",)


def _flags(names: list[str]) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in names)


async def submit(args: argparse.Namespace) -> int:
    if args.file is None:
        missing = [n for n in _REQUIRED_WITHOUT_FILE if getattr(args, n) is None]
        if missing:
            raise UsageError("missing " + _flags(missing))
    else:
        ignored = [n for n in _BODY_FLAGS if getattr(args, n) is not None]
        if ignored:
            raise UsageError(f"--file sends the whole command; leave out {_flags(ignored)}")
    body = _submit_body(args)
    given = body.get("caller", {}).get("id") if isinstance(body.get("caller"), dict) else None
    async with EngineClient.open(args.state_dir) as engine:
        caller = engine.credential.token(_CALLER_ROLES, given if isinstance(given, str) else None)
        if not caller:
            raise UsageError("say who pays: --caller-id ID (no credential names a caller)")
        if args.file is None:
            body["caller"] = _principal(engine, args, caller)
        if args.file is None and args.max_fee_msat is None:
            body["max_fee_msat"] = await _fee_allowed(engine, body["amount_msat"])
        reply = await engine.request(
            f"{subjects.API_PREFIX}.submit.{caller}", body, sign=_agent_signer(args)
        )
    return show_reply(reply, as_json=args.json)


def _principal(engine: EngineClient, args: argparse.Namespace, token: str) -> dict[str, str]:
    """The payload's caller: ``--caller-id`` if given (the engine refuses one that is not the
    credential's), else the credential's id; the kind from ``--caller-kind``, else the
    registry's, else service."""
    identity = engine.credential.identity
    kind = args.caller_kind or (identity.kind if identity is not None else None) or "service"
    return {"id": args.caller_id or token, "kind": kind}


async def _fee_allowed(engine: EngineClient, amount_msat: int) -> int:
    """The largest fee the policy in force allows for this amount, said once on stderr."""
    view = await engine.policy_view()
    fee_msat = fee_cap_msat(view, amount_msat)
    print(
        f"corridor: max fee {fee_msat} msat for {amount_msat} msat, the most policy version "
        f"{view.get('policy_version')} allows (choose another with --max-fee-msat)",
        file=sys.stderr,
    )
    return fee_msat


def _submit_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.file is not None:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{args.file}: not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise UsageError(f"{args.file}: a SubmitPaymentIntent is a JSON object")
        return body
    if args.amount_msat <= 0:
        raise UsageError("--amount-msat must be positive")
    if args.max_fee_msat is not None and args.max_fee_msat < 0:
        raise UsageError("--max-fee-msat must not be negative")
    body = {
        "type": "SubmitPaymentIntent",
        "version": 1,
        "idempotency_key": args.idempotency_key,
        "caller": {"id": args.caller_id, "kind": args.caller_kind or "service"},
        "corridor": args.corridor,
        "amount_msat": args.amount_msat,
        "max_fee_msat": args.max_fee_msat,
    }
    if args.payment_request:
        body["payment_request"] = args.payment_request
    if args.destination:
        body["destination"] = args.destination
    if args.deadline_s:
        body["deadline_s"] = args.deadline_s
    if getattr(args, "payee_id", None):
        body["payee_id"] = args.payee_id  # ADR 0272
    if args.metadata:
        body["metadata"] = _metadata(args.metadata)
    return body


def _metadata(pairs: list[str]) -> dict[str, str]:
    bad = [kv for kv in pairs if "=" not in kv]
    if bad:
        raise UsageError(f"--metadata takes KEY=VALUE pairs, not {bad[0]!r}")
    return dict(kv.split("=", 1) for kv in pairs)


async def get(args: argparse.Namespace) -> int:
    body = {"type": "GetPaymentIntent", "version": 1, "intent_id": args.intent_id}
    async with EngineClient.open(args.state_dir) as engine:
        reply = await engine.request(engine.credential.reader_subject(subjects.API_GET), body)
    if args.json or not reply.get("ok"):
        return show_reply(reply, as_json=args.json)
    shown = {k: v for k, v in reply.items() if k != "events"}
    shown.update(_agent_facts(reply.get("events") or []))
    sys.stdout.write(readable_reply(shown))
    sys.stdout.write("\n")
    output.print_table(
        ["POSITION", "VERSION", "RECORDED", "TYPE"],
        [
            [e.get("position"), e.get("stream_version"), output.utc(e.get("recorded_at_ms")),
             e.get("type")]
            for e in reply.get("events") or []
        ],
    )  # fmt: skip
    return exit_codes.OK


def _agent_facts(events: list[dict[str, Any]]) -> dict[str, Any]:
    """An agent's intent: the key that signed it and the human it acts for (ADR 0068)."""
    for event in events:
        if event.get("type") == "IntentReceived":
            data = event.get("data") or {}
            return {k: data[k] for k in ("on_behalf_of", "agent_key_id") if data.get(k)}
    return {}


async def decide(args: argparse.Namespace) -> int:
    """``approve`` or ``reject`` (``args.command``) an intent waiting for an operator."""
    verb = args.command
    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR_ROLES, args.operator_id)
        if not operator:
            raise UsageError("say who decides: --operator-id OP (no credential names one)")
        body: dict[str, Any] = {
            "type": f"{verb.capitalize()}PaymentIntent", "version": 1,
            "intent_id": args.intent_id, "operator_id": args.operator_id or operator,
        }  # fmt: skip
        if verb == "reject":
            body["reason"] = args.reason
        else:
            body["note"] = args.note
        reply = await engine.request(f"{subjects.API_PREFIX}.{verb}.{operator}", body)
    return show_reply(reply, as_json=args.json)


async def resolve(args: argparse.Namespace) -> int:
    """End an intent its node never proved either way, with evidence (ADR 0076)."""
    if args.resolution == "settled" and not args.preimage:
        raise UsageError("settled needs --preimage HEX (the node's proof of payment)")
    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR_ROLES, args.operator_id)
        if not operator:
            raise UsageError("say who decides: --operator-id OP (no credential names one)")
        body: dict[str, Any] = {
            "type": "ResolvePaymentIntent", "version": 1, "intent_id": args.intent_id,
            "operator_id": args.operator_id or operator, "resolution": args.resolution,
            "evidence": args.evidence,
        }  # fmt: skip
        if args.preimage:
            body["preimage"] = args.preimage
        if args.fee_msat is not None:
            body["fee_msat"] = args.fee_msat
        reply = await engine.request(f"{subjects.API_PREFIX}.resolve.{operator}", body)
    return show_reply(reply, as_json=args.json)


async def cancel(args: argparse.Namespace) -> int:
    async with EngineClient.open(args.state_dir) as engine:
        caller = engine.credential.token(_CALLER_ROLES, args.caller_id)
        if not caller:
            raise UsageError("say whose intent: --caller-id ID (no credential names a caller)")
        body = {
            "type": "CancelPaymentIntent", "version": 1, "intent_id": args.intent_id,
            "caller": _principal(engine, args, caller), "reason": args.reason,
        }  # fmt: skip
        reply = await engine.request(
            f"{subjects.API_PREFIX}.cancel.{caller}", body, sign=_agent_signer(args)
        )
    return show_reply(reply, as_json=args.json)


def _agent_signer(args: argparse.Namespace) -> Callable[[bytes], dict[str, str]] | None:
    """With ``--agent-key``, the headers that sign a command as the agent (ADR 0066)."""
    if args.agent_key is None:
        return None
    from services.cli.agents import load_private_key
    from services.identity.agent_signatures import sign_command

    key = load_private_key(args.agent_key)
    return lambda data: sign_command(key, data)


def show_reply(reply: dict[str, Any], *, as_json: bool) -> int:
    """Print a command's reply (as-is with ``as_json``); the exit code follows ``ok``."""
    code = exit_codes.OK if reply.get("ok") else exit_codes.REFUSED
    if as_json:
        output.print_json(reply)
        return code
    if not reply.get("ok"):
        print(f"corridor: refused: {describe_error(reply)}", file=sys.stderr)
    sys.stdout.write(readable_reply(reply))
    return code


# Shown by ``readable_reply`` in this order, after the fields it names itself.
_REPLY_FIELDS = (
    "intent_id", "state", "stream_version", "policy_version", "active_version", "reason",
)  # fmt: skip


def readable_reply(reply: dict[str, Any]) -> str:
    """The fields of a reply a person reads, one per line; ``explanation`` and ``failures``
    (lists of records) as tables. Fields not known here are shown too, compactly."""
    pairs: list[tuple[str, Any]] = []
    for key in _REPLY_FIELDS:
        if reply.get(key) is not None:
            pairs.append((key.replace("_", " "), reply[key]))
    if reply.get("duplicate"):
        pairs.append(("duplicate", "yes: this request was answered before; same result"))
    skip = {*_REPLY_FIELDS, "type", "version", "ok", "error", "duplicate",
            "explanation", "failures"}  # fmt: skip
    for key, value in reply.items():
        if key not in skip:
            pairs.append((key.replace("_", " "), _compact(value)))
    text = output.fields(pairs)
    for key in ("explanation", "failures"):
        value = reply.get(key)
        if value:
            text += f"\n{key}:\n" + _indented(_section(value))
    return text


def _section(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return output.records_table(value)
    if isinstance(value, dict):
        return output.fields([(str(k), _compact(v)) for k, v in value.items()])
    if isinstance(value, list):
        return "".join(f"- {_compact(v)}\n" for v in value)
    return f"{value}\n"


def _compact(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def _indented(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
