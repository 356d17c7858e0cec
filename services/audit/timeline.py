"""``corridor audit timeline``: what happened to an intent, and why, from the projection rows.

One intent: who asked (the authenticated identity and kind, and for an agent the key and the
human it acts for), the policy version and the rules that fired, each route with the candidates
passed over, every attempt with its outcome and preimage, every operator action with its
reason, then the timeline event by event. Without an intent id: the intents that match
``--caller``, ``--corridor`` and ``--from``/``--to`` (time received), newest first.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

# Rows a listing shows unless --limit says otherwise; the store caps any limit.
LIST_ROWS_DEFAULT: Final = 50


async def timeline(args: argparse.Namespace) -> int:
    from projections.store import SEARCH_ROWS_MAX
    from services.audit.cli import parse_time
    from services.cli import exit_codes, output
    from services.cli.errors import UsageError
    from services.cli.projection_reads import projection_store

    if not 1 <= args.limit <= SEARCH_ROWS_MAX:
        raise UsageError(f"--limit must be 1 to {SEARCH_ROWS_MAX}")
    from_ms = None if args.from_time is None else parse_time(args.from_time, "--from")
    to_ms = None if args.to_time is None else parse_time(args.to_time, "--to")
    async with projection_store(args.state_dir) as reader:
        if args.intent_id is not None:
            doc = await reader.intent_doc(args.intent_id)
            if doc is None:
                print(f"no intent {args.intent_id!r} in the projection", file=sys.stderr)
                return exit_codes.REFUSED
            docs = [doc]
        else:
            docs = await reader.search_intents(
                caller_id=args.caller, corridor=args.corridor, received_from_ms=from_ms,
                received_to_ms=to_ms, limit=args.limit,
            )  # fmt: skip
    if args.json:
        output.print_json(docs if args.intent_id is None else docs[0])
        return exit_codes.OK
    if args.intent_id is None:
        output.print_table(
            ["INTENT", "RECEIVED", "CALLER", "CORRIDOR", "AMOUNT_MSAT", "STATE"],
            [[d["intent_id"], output.utc(d["received_at_ms"]), _who(d), d["corridor"],
              d["amount_msat"], d["state"]] for d in docs],
        )  # fmt: skip
        return exit_codes.OK
    sys.stdout.write(render(docs[0]))
    return exit_codes.OK


def _who(doc: dict[str, Any]) -> str:
    who = f"{doc['caller_kind']}:{doc['caller_id']}"
    return who + (f" for {doc['on_behalf_of']}" if doc.get("on_behalf_of") else "")


def render(doc: dict[str, Any]) -> str:
    from services.cli import output

    lines = [
        f"intent     {doc['intent_id']}  ({doc['state']})",
        f"asked by   {_who(doc)}" + (f", key {doc['agent_key_id']}" if doc["agent_key_id"] else ""),
        f"amount     {doc['amount_msat']} msat (fee cap {doc['max_fee_msat']}) on "
        f"{doc['corridor']}",
        f"received   {output.utc(doc['received_at_ms'])}",
    ]
    if doc["policy_version"] is not None:
        lines.append(f"policy     v{doc['policy_version']}, tier {doc['tier']}")
        lines += [f"  rule     {r['rule']}: {r['effect']} {r.get('inputs') or ''}".rstrip()
                  for r in doc["explanation"]]  # fmt: skip
    for route in doc["routes"]:
        lines.append(f"route      attempt {route['attempt']}: {route['region']}/{route['node']} "
                     f"({route['reason']})")  # fmt: skip
        lines += [f"  passed   {c['region']}/{c['node']}: {c['reason']}" for c in route["rejected"]]
    for a in doc["attempts"]:
        extra = " ".join(f"{k}={a[k]}" for k in ("fee_msat", "preimage", "reason") if a.get(k))
        lines.append(f"attempt    {a['attempt']} on {a['node']}: {a['outcome']} {extra}".rstrip())
    for action in doc["operator_actions"]:
        lines.append(f"operator   {action['operator_id']} {action['action']} at "
                     f"{output.utc(action['at_ms'])}: {action['reason']}")  # fmt: skip
    lines.append("")
    table = output.table(
        ["POSITION", "RECORDED", "EVENT", "WHAT"],
        [[e["position"], output.utc(e["at_ms"]), e["type"], e["what"]] for e in doc["timeline"]],
    )
    return "\n".join(lines) + "\n" + table
