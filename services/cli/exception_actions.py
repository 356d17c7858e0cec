"""``corridor exceptions show|resolve|reprocess``: the operator's actions on the exception queue
(ADR 0161). ``list`` is ``services.cli.audit:exceptions``.

An exception is addressed by an intent id (its intent exception and any reconciliation item
naming it) or by a reconciliation item's key (``<category>:<payment hash>``). Every action is
an engine command sent under the operator's credential, so it lands in the log with the
operator's identity; nothing here writes the log or decides.

- ``resolve`` sends, by kind: ``AcknowledgeAnomaly`` (an anomaly), ``ResolvePaymentIntent``
  (in doubt, escalated, unproven success: ``--settled PREIMAGE`` or ``--not-paid``),
  ``ResolveReconciliationMismatch`` (a reconciliation item), each with the reason and evidence.
- ``reprocess`` asks the node again and acts only on its proof: an intent awaiting evidence is
  looked up on its attempt's node (``NodePort.lookup_payment``) and resolved with the node's
  record as evidence when the record proves the outcome; a reconciliation item's node gets a
  fresh reconciliation pass. Anything already final or closed is left as it is, so
  reprocessing twice has the effect of once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

from schemas import limits
from services.bus import subjects
from services.cli import exit_codes, output
from services.cli.errors import UsageError
from services.reconciliation.reprocess import AWAITING_EVIDENCE_KINDS, reprocess_intent

_OPERATOR_ROLES: Final = ("operator",)
RECONCILIATION_KIND_PREFIX: Final = "reconciliation:"


def evidence_text(value: str | None) -> str:
    """``--evidence FILE_OR_TEXT``: a readable file's contents, else the text itself; at most
    ``EVIDENCE_CHARS_MAX`` characters (refused beyond, never cut: evidence is kept whole)."""
    if not value:
        return ""
    path = Path(value)
    text = value
    if len(value) < 4096 and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as handle:
            text = handle.read(limits.EVIDENCE_CHARS_MAX + 1)
    if len(text) > limits.EVIDENCE_CHARS_MAX:
        raise UsageError(f"--evidence is longer than {limits.EVIDENCE_CHARS_MAX} characters")
    if limits.TEXT_CHARS_FORBIDDEN in text:
        raise UsageError("--evidence holds a NUL character, which the log cannot store")
    return text


async def targets_of(
    state_dir: Path | None, ident: str, *, stuck_after_s: int
) -> list[dict[str, Any]]:
    """The open exceptions ``ident`` names: the queue's rows for that intent, and the open
    reconciliation items whose intent, key or payment hash it is (each with its ``key``)."""
    from services.cli.audit import exception_rows
    from services.cli.recon import open_items

    rows = await exception_rows(state_dir, stuck_after_s=stuck_after_s)
    found = [
        dict(row) for row in rows
        if row["intent_id"] == ident and not row["kind"].startswith(RECONCILIATION_KIND_PREFIX)
    ]  # fmt: skip
    for item in (await open_items(state_dir))["items"]:
        if ident in (item["intent_id"], item["key"], item["payment_hash"]):
            found.append({
                "intent_id": item["intent_id"] or "-",
                "kind": RECONCILIATION_KIND_PREFIX + item["category"],
                "since_ms": item["since_ms"], "region": item["region"], "node": item["node"],
                "key": item["key"], "payment_hash": item["payment_hash"],
                "detail": " ".join(f"{k}={v}" for k, v in sorted(item["evidence"].items())),
            })  # fmt: skip
    return found


def _chosen(targets: list[dict[str, Any]], kind: str | None) -> list[dict[str, Any]]:
    if kind is not None:
        targets = [t for t in targets if t["kind"] == kind]
    return targets


async def show(args: argparse.Namespace) -> int:
    """The rows ``ID`` names and, for an intent, its document: attempts, operator actions and
    timeline, folded from the engine's ``GetPaymentIntent`` reply."""
    targets = await targets_of(args.state_dir, args.id, stuck_after_s=args.stuck_after_s)
    intent = await _intent_doc(args.state_dir, _intent_id(args.id, targets))
    if not targets and intent is None:
        raise UsageError(f"{args.id}: no open exception and no intent of that id")
    if args.json:
        output.print_json({"exceptions": targets, "intent": intent})
        return exit_codes.OK
    if targets:
        output.print_table(
            ["KIND", "SINCE", "REGION", "NODE", "KEY", "DETAIL"],
            [[t["kind"], output.utc(t.get("since_ms")), t.get("region"), t.get("node"),
              t.get("key", "-"), t["detail"]] for t in targets],
        )  # fmt: skip
    else:
        print(f"{args.id}: nothing open in the exception queue")
    if intent is not None:
        _print_intent(intent)
    return exit_codes.OK


def _intent_id(ident: str, targets: list[dict[str, Any]]) -> str | None:
    ids = sorted(str(t["intent_id"]) for t in targets if t["intent_id"] != "-")
    if len(set(ids)) == 1:
        return ids[0]
    return ident if ":" not in ident and len(ident) != 64 else None


def _print_intent(doc: dict[str, Any]) -> None:
    print()
    print(output.fields([
        ("intent", doc["intent_id"]), ("state", doc["state"]),
        ("caller", f"{doc['caller_kind']} {doc['caller_id']}"),
        ("amount msat", doc["amount_msat"]), ("payment hash", doc.get("payment_hash")),
    ]), end="")  # fmt: skip
    if doc["attempts"]:
        print("\nattempts:")
        output.print_table(
            ["ATTEMPT", "REGION", "NODE", "OUTCOME", "FEE_MSAT", "REASON"],
            [[a["attempt"], a["region"], a["node"], a["outcome"], a["fee_msat"], a["reason"]]
             for a in doc["attempts"]],
        )  # fmt: skip
    if doc["operator_actions"]:
        print("\noperator actions:")
        output.print_table(
            ["AT", "OPERATOR", "ACTION", "REASON"],
            [[output.utc(a["at_ms"]), a["operator_id"], a["action"], a["reason"]]
             for a in doc["operator_actions"]],
        )  # fmt: skip
    print("\ntimeline:")
    output.print_table(
        ["POSITION", "AT", "TYPE", "WHAT"],
        [[t["position"], output.utc(t["at_ms"]), t["type"], t["what"]] for t in doc["timeline"]],
    )  # fmt: skip


async def _intent_doc(state_dir: Path | None, intent_id: str | None) -> dict[str, Any] | None:
    """The intent's document (``projections.intents``) from the projection tables, caught up
    first (ADR 0152); None when there is no such intent."""
    if intent_id is None:
        return None
    from services.cli.projection_reads import projection_store

    async with projection_store(state_dir) as reader:
        return await reader.intent_doc(intent_id)


async def resolve(args: argparse.Namespace) -> int:
    targets = _chosen(
        await targets_of(args.state_dir, args.id, stuck_after_s=args.stuck_after_s),
        args.kind,
    )  # fmt: skip
    if not targets:
        raise UsageError(f"{args.id}: no open exception{_of_kind(args.kind)} to resolve")
    kinds = sorted({t["kind"] for t in targets})
    if len(targets) > 1:
        raise UsageError(f"{args.id} names {len(targets)} open exceptions ({', '.join(kinds)}): "
                         "choose one with --kind, or use an item's key")  # fmt: skip
    [target] = targets
    evidence = evidence_text(args.evidence)
    kind = target["kind"]
    if kind == "anomaly":
        body: dict[str, Any] = {"type": "AcknowledgeAnomaly", "intent_id": target["intent_id"],
                                "reason": args.reason, "evidence": evidence}  # fmt: skip
        return await _send(args, f"{subjects.API_PREFIX}.acknowledge", body)
    if kind in AWAITING_EVIDENCE_KINDS:
        return await _send(args, f"{subjects.API_PREFIX}.resolve",
                           _resolution(args, target, evidence))  # fmt: skip
    body = {"type": "ResolveReconciliationMismatch", "node": target["node"],
            "key": target["key"], "reason": args.reason, "evidence": evidence}  # fmt: skip
    return await _send(args, f"{subjects.RECON_API_PREFIX}.resolve", body)


def _of_kind(kind: str | None) -> str:
    return f" of kind {kind}" if kind else ""


def _resolution(args: argparse.Namespace, target: dict[str, Any], evidence: str) -> dict[str, Any]:
    if (args.settled is None) == (not args.not_paid):
        raise UsageError(f"a {target['kind']} exception ends with the node's proof: "
                         "--settled PREIMAGE, or --not-paid")  # fmt: skip
    # The reason leads the evidence: ResolvePaymentIntent has one text field for both.
    text = f"{args.reason}\n{evidence}" if evidence else args.reason
    if len(text) > limits.EVIDENCE_CHARS_MAX:
        raise UsageError(f"--reason and --evidence together exceed {limits.EVIDENCE_CHARS_MAX} "
                         "characters")  # fmt: skip
    body: dict[str, Any] = {
        "type": "ResolvePaymentIntent", "intent_id": target["intent_id"],
        "resolution": "not_paid" if args.not_paid else "settled", "evidence": text,
    }  # fmt: skip
    if args.settled is not None:
        body["preimage"] = args.settled
    if args.fee_msat is not None:
        body["fee_msat"] = args.fee_msat
    return body


async def _send(args: argparse.Namespace, prefix: str, body: dict[str, Any]) -> int:
    from services.cli.engine import EngineClient
    from services.cli.intents import show_reply

    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR_ROLES, args.operator_id)
        if not operator:
            raise UsageError("say who acts: --operator-id OP (no credential names one)")
        body = {**body, "version": 1, "operator_id": args.operator_id or operator}
        reply = await engine.request(f"{prefix}.{operator}", body)
    return show_reply(reply, as_json=args.json)


async def reprocess(args: argparse.Namespace) -> int:
    """Ask again where the answer lives; act only on proof; change nothing otherwise."""
    from services.logging import configure_logging
    from services.settings import Settings

    # Log lines (a reconciliation pass logs) go to stderr: stdout is the outcome.
    configure_logging(Settings().log_level, stream=sys.stderr)
    targets = _chosen(
        await targets_of(args.state_dir, args.id, stuck_after_s=args.stuck_after_s),
        args.kind,
    )  # fmt: skip
    outcomes: list[dict[str, Any]] = []
    if not targets:
        outcomes.append({"id": args.id, "action": "none",
                         "detail": "nothing open: already final, resolved or closed"})  # fmt: skip
    for target in targets:
        kind = target["kind"]
        if kind in AWAITING_EVIDENCE_KINDS:
            outcomes.append(await _reprocess_intent(args, target))
        elif kind.startswith(RECONCILIATION_KIND_PREFIX):
            outcomes.append(await _reprocess_item(args, target))
        else:
            detail = "an anomaly needs an operator's word: `exceptions resolve` with the reason"
            outcomes.append(
                {"id": target["intent_id"], "kind": kind, "action": "none", "detail": detail}
            )
    if args.json:
        output.print_json(outcomes)
    else:
        for outcome in outcomes:
            print(f"{outcome['id']}: {outcome['action']}: {outcome['detail']}")
    failed = any(o["action"] == "refused" for o in outcomes)
    return exit_codes.REFUSED if failed else exit_codes.OK


async def _reprocess_intent(args: argparse.Namespace, target: dict[str, Any]) -> dict[str, Any]:
    async def lookup(payment_hash: str) -> Any:
        return await _lookup(args, target, payment_hash)

    async def send(body: dict[str, Any]) -> dict[str, Any]:
        return await _request(args, f"{subjects.API_PREFIX}.resolve", body)

    async def reread(intent_id: str) -> dict[str, Any] | None:
        return await _intent_doc(args.state_dir, intent_id)

    return await reprocess_intent(
        target, await reread(target["intent_id"]), lookup=lookup, send=send, reread=reread
    )


async def _lookup(args: argparse.Namespace, target: dict[str, Any], payment_hash: str) -> Any:
    from services.endpoints import DEFAULT_STATE_DIR
    from services.executor.errors import NodeUriError
    from services.executor.nodes import adapter_for, resolve_node

    state_dir = args.state_dir or DEFAULT_STATE_DIR
    uri = args.node_uri or f"sim://{target['node']}"
    try:
        resolved = resolve_node(uri, region=target["region"], state_dir=state_dir,
                                name=target["node"])  # fmt: skip
    except NodeUriError as exc:
        raise UsageError(f"cannot reach node {target['node']}: {exc} (give --node-uri)") from None
    adapter = adapter_for(resolved.uri)
    try:
        return await adapter.lookup_payment(payment_hash)
    finally:
        await adapter.close()


async def _reprocess_item(args: argparse.Namespace, target: dict[str, Any]) -> dict[str, Any]:
    """A fresh pass over the item's node, as its reconciler: an item the node's record no
    longer contradicts is closed by the engine; one still true stays open (one item per key,
    so the pass adds nothing)."""
    from services.cli.recon import open_items, pass_over, reconciler_creds
    from services.endpoints import DEFAULT_STATE_DIR
    from services.executor.nodes import resolve_node
    from services.identity.nats_auth import seed_path
    from services.settings import Settings

    state_dir = args.state_dir or DEFAULT_STATE_DIR
    node, region = target["node"], target["region"]
    # The node's reconciler credential `corridor up` made, else CORRIDOR_CREDS.
    made = seed_path(state_dir, "reconciler", node)
    seed = made if made.exists() else reconciler_creds(args.state_dir, node)
    if seed is None:
        raise UsageError(
            f"no reconciler credential for {node} in {state_dir}/auth/ "
            f"(corridor creds add --role reconciler --region {region} --node {node})"
        )
    uri = resolve_node(args.node_uri or f"sim://{node}", region=region, state_dir=state_dir,
                       name=node).uri  # fmt: skip
    result = await pass_over(args.state_dir, Settings(), (region, node, uri), creds=seed)
    still = any(i["key"] == target["key"] and i["node"] == node
                for i in (await open_items(args.state_dir))["items"])  # fmt: skip
    closed = sum(reply.resolved for reply in result.replies)
    return {"id": target["key"], "kind": target["kind"],
            "action": "none" if still else "closed",
            "detail": (f"node {node} still disagrees: open" if still
                       else f"node {node}'s pass closed it ({closed} item(s) closed)")}  # fmt: skip


async def _request(args: argparse.Namespace, prefix: str, body: dict[str, Any]) -> dict[str, Any]:
    from services.cli.engine import EngineClient

    async with EngineClient.open(args.state_dir) as engine:
        operator = engine.credential.token(_OPERATOR_ROLES, args.operator_id)
        if not operator:
            raise UsageError("say who acts: --operator-id OP (no credential names one)")
        reply: dict[str, Any] = await engine.request(
            f"{prefix}.{operator}",
            {**body, "version": 1, "operator_id": args.operator_id or operator},
        )
    return reply
