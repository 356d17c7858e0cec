"""One document per intent: its summary, its exception status and its audit timeline.

A pure fold, ``apply(doc, event) -> doc``, over the intent's own events in stream order (upcast
first, with ``position`` and ``recorded_at_ms`` from the log). The projection runner
(``projections/runner.py``) stores the documents in PostgreSQL; the pilot report, the exception
queue, ``corridor audit timeline`` and ``corridor get``'s summary all read them, so none of them
scans the log.

Document fields (``IntentDoc``, the row every kind shares, ``intent_rows``; everything plain
JSON, money in integer msat):

- who asked: ``caller_id``, ``caller_kind``, ``on_behalf_of``, ``agent_key_id``;
- what: ``corridor``, ``amount_msat``, ``max_fee_msat``, ``received_at_ms``;
- where it is: ``state``, ``updated_at_ms``, ``position`` (of its newest event);
- policy: ``tier``, ``policy_version``, ``explanation`` (the rules that fired);
- routing: ``routes`` (each with its ``rejected`` candidates); ``dispatches``;
- attempts: ``attempts`` (region, node, dispatched time, outcome, preimage, fee, reason);
  ``attempt_failures`` (failed or in doubt);
- outcome: ``settled_at_ms``, ``fee_msat``, ``failure_reason``;
- operator: ``approved`` / ``operator_rejected`` (bools), ``operator_actions`` (who, what, why);
- exception inputs: ``on_wire_since_ms``, ``doubt_reason``, ``unproven``, ``escalated``,
  ``anomalies`` (open ones; ``acknowledged`` ones are kept apart). ``exception_of(doc, ...)``
  turns them into a queue row at read time, because "stuck" depends on the reader's clock;
- ``timeline``: one entry per event (position, time, type, a short ``what``).
"""

from __future__ import annotations

from typing import Any, Final

from projections.intent_rows import WHAT_CHARS_MAX, add_to_timeline, advance, new_row
from projections.intent_rows import Doc as IntentDoc
from projections.receives import STARTS_RECEIVE, apply_receive, is_receive, new_receive_doc
from services.domain.intent.transitions import OFF_THE_WIRE_EVENTS, STATUS_AFTER

# Events of the intent stream that this fold reads; a stream is an intent's once it starts with
# IntentReceived (other streams, e.g. ``log-checkpoints``, never reach this fold).
STARTS_INTENT: Final = "IntentReceived"


def new_doc(event: dict[str, Any]) -> IntentDoc:
    data = event["data"]
    return new_row(
        event, state="received", max_fee_msat=int(data["max_fee_msat"]),
        payment_hash=(data.get("invoice") or {}).get("payment_hash"),
        destination=data.get("destination"),
    )  # fmt: skip


def apply(doc: IntentDoc | None, event: dict[str, Any]) -> IntentDoc | None:
    """The document after ``event`` (upcast). ``None`` until the stream's ``IntentReceived``."""
    kind, data = event["type"], event["data"]
    at_ms = int(event["recorded_at_ms"])
    if doc is None and kind == STARTS_RECEIVE:
        doc = new_receive_doc(event)
    if doc is not None and is_receive(doc):  # a receive (ADR 0220): its own fold
        return apply_receive(doc, event)
    if doc is None:
        if kind != STARTS_INTENT:
            return None  # a stream whose start is outside what was folded
        doc = new_doc(event)
    else:
        doc = dict(doc)  # callers may keep the old one
    advance(doc, event, STATUS_AFTER)
    what = _FOLDS.get(kind, _nothing)(doc, data, at_ms)
    if kind in OFF_THE_WIRE_EVENTS:
        doc.update(on_wire_since_ms=None, doubt_reason=None, unproven=False, escalated=None)
    add_to_timeline(doc, event, what)
    return doc


def _received(doc: IntentDoc, data: dict[str, Any], _at_ms: int) -> str:
    who = f"{doc['caller_kind']} {doc['caller_id']}"
    if doc["on_behalf_of"]:
        who += f" on behalf of {doc['on_behalf_of']} (key {doc['agent_key_id']})"
    return f"{who} asked to pay {doc['amount_msat']} msat on {doc['corridor']}"


def _policy(doc: IntentDoc, data: dict[str, Any], _at_ms: int) -> str:
    doc["tier"], doc["policy_version"] = data["tier"], data["policy_version"]
    doc["explanation"] = [dict(rule) for rule in data.get("explanation") or ()]
    rules = ", ".join(f"{r['rule']}:{r['effect']}" for r in doc["explanation"])
    head = f"policy v{data['policy_version']}: tier {data['tier']}"
    return f"{head} ({rules})" if rules else head


def _approval_requested(doc: IntentDoc, data: dict[str, Any], _at_ms: int) -> str:
    return "waits for an operator's approval"


def _approved(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    doc["approved"] = True
    _operator(doc, at_ms, data["operator_id"], "approved", data.get("note", ""))
    return f"approved by {data['operator_id']}" + (f": {data['note']}" if data.get("note") else "")


def _rejected(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    if data["by"] == "operator":
        doc["operator_rejected"] = True
        _operator(doc, at_ms, data.get("operator_id"), "rejected", data["reason"])
        return f"rejected by {data.get('operator_id')}: {data['reason']}"
    return f"rejected by policy: {data['reason']}"


def _routed(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    rejected = [dict(c) for c in data.get("rejected") or ()]
    doc["routes"] = [*doc["routes"], {"attempt": data["attempt"], "region": data["region"],
                                      "node": data["node"], "reason": data["reason"],
                                      "rejected": rejected, "at_ms": at_ms}]  # fmt: skip
    passed = "; ".join(f"{c['node']} ({c['reason']})" for c in rejected)
    return f"attempt {data['attempt']} routed to {data['region']}/{data['node']} " \
           f"({data['reason']})" + (f"; passed over {passed}" if passed else "")  # fmt: skip


def _dispatched(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    doc["dispatches"] += 1
    doc.update(on_wire_since_ms=at_ms, region=data["region"], node=data["node"],
               doubt_reason=None, unproven=False, escalated=None)  # fmt: skip
    if data.get("payment_hash"):
        doc["payment_hash"] = data["payment_hash"]
    doc["attempts"] = [*doc["attempts"], {
        "attempt": data["attempt"], "region": data["region"], "node": data["node"],
        "dispatched_at_ms": at_ms, "amount_msat": int(data["amount_msat"]),
        "payment_hash": data.get("payment_hash"), "outcome": "dispatched", "at_ms": at_ms,
        "preimage": None, "fee_msat": None, "reason": None,
    }]  # fmt: skip
    return f"attempt {data['attempt']} sent to {data['region']}/{data['node']}"


def _attempt(doc: IntentDoc, number: int, **changes: Any) -> None:
    doc["attempts"] = [{**a, **changes} if a["attempt"] == number else a for a in doc["attempts"]]


def _in_flight(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    _attempt(doc, data["attempt"], outcome="in_flight", at_ms=at_ms)
    return f"attempt {data['attempt']} in flight"


def _succeeded(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    doc["unproven"] = True  # until IntentSettled proves it (it follows at once when proven)
    _attempt(doc, data["attempt"], outcome="succeeded", at_ms=at_ms, preimage=data["preimage"],
             fee_msat=int(data["fee_msat"]))  # fmt: skip
    return f"attempt {data['attempt']} succeeded, fee {data['fee_msat']} msat"


def _attempt_failed(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    doc["attempt_failures"] += 1
    _attempt(doc, data["attempt"], outcome="failed", at_ms=at_ms, reason=data["reason"])
    proven = "proven not paid" if data.get("confirmed_not_paid") else "not proven"
    return f"attempt {data['attempt']} failed: {data['reason']} ({proven})"


def _in_doubt(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    doc["attempt_failures"] += 1
    doc["doubt_reason"] = str(data.get("reason"))
    _attempt(doc, data["attempt"], outcome="in_doubt", at_ms=at_ms, reason=data["reason"])
    return f"attempt {data['attempt']} in doubt: {data['reason']}"


def _failed(doc: IntentDoc, data: dict[str, Any], _at_ms: int) -> str:
    doc["failure_reason"] = data["reason"]
    return f"failed after {data['attempts']} attempt(s): {data['reason']}"


def _settled(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    doc.update(settled_at_ms=at_ms, fee_msat=int(data["fee_msat"]))
    return f"settled: {data['amount_msat']} msat + fee {data['fee_msat']} msat, " \
           f"preimage {data['preimage']}"  # fmt: skip


def _cancelled(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    return f"cancelled by {data['by']}" + (f": {data['reason']}" if data.get("reason") else "")


def _expired(doc: IntentDoc, data: dict[str, Any], _at_ms: int) -> str:
    return "expired before dispatch"


def _ignored(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    what = f"{data['outcome']} of attempt {data['attempt']} while {data['state']}: {data['reason']}"
    if data.get("anomaly"):
        detail = f"{data['outcome']} while {data['state']}: {data['reason']}"
        doc["anomalies"] = [*doc["anomalies"], {"at_ms": at_ms, "detail": detail[:WHAT_CHARS_MAX]}]
        return f"ANOMALY: {what}"
    return f"ignored {what}"


def _escalated(doc: IntentDoc, data: dict[str, Any], _at_ms: int) -> str:
    doc["escalated"] = (
        f"{data.get('state')} past its life bound of {data.get('life_s')} s ({data.get('reason')})"
    )
    return f"escalated: {doc['escalated']}"


def _resolved(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    _operator(doc, at_ms, data["operator_id"], f"resolved {data['resolution']}", data["evidence"])
    return f"resolved as {data['resolution']} by {data['operator_id']}: {data['evidence']}"


def _anomaly_acknowledged(doc: IntentDoc, data: dict[str, Any], at_ms: int) -> str:
    doc["acknowledged"] = [*doc["acknowledged"], *doc["anomalies"]]
    doc["anomalies"] = []
    reason = data.get("reason", "")
    _operator(doc, at_ms, data.get("operator_id"), "acknowledged anomaly", reason)
    return f"anomaly acknowledged by {data.get('operator_id')}: {reason}"


def _nothing(doc: IntentDoc, data: dict[str, Any], _at_ms: int) -> str:
    return ""


def _operator(doc: IntentDoc, at_ms: int, operator_id: Any, action: str, reason: str) -> None:
    doc["operator_actions"] = [
        *doc["operator_actions"],
        {"at_ms": at_ms, "operator_id": operator_id, "action": action,
         "reason": str(reason)[:WHAT_CHARS_MAX]},
    ]  # fmt: skip


_FOLDS: Final = {
    "IntentReceived": _received,
    "IntentPolicyChecked": _policy,
    "IntentApprovalRequested": _approval_requested,
    "IntentApproved": _approved,
    "IntentRejected": _rejected,
    "IntentRouted": _routed,
    "IntentDispatched": _dispatched,
    "PaymentInFlightReported": _in_flight,
    "PaymentSucceeded": _succeeded,
    "PaymentAttemptFailed": _attempt_failed,
    "PaymentInDoubt": _in_doubt,
    "IntentFailed": _failed,
    "IntentSettled": _settled,
    "IntentCancelled": _cancelled,
    "IntentExpired": _expired,
    "OutcomeIgnored": _ignored,
    "IntentEscalated": _escalated,
    "IntentResolved": _resolved,
    "AnomalyAcknowledged": _anomaly_acknowledged,
}


def exception_of(doc: IntentDoc, *, now_ms: int, stuck_after_ms: int) -> list[dict[str, Any]]:
    """The exception-queue rows this intent stands for now (none, one, or its anomalies too),
    in the shape ``corridor exceptions`` prints. The rules are the old log fold's
    (``projections/exceptions.py``), applied to one document."""
    rows = [
        {"intent_id": doc["intent_id"], "kind": "anomaly", "since_ms": a["at_ms"],
         "detail": a["detail"]}
        for a in doc["anomalies"]
    ]  # fmt: skip
    since = doc["on_wire_since_ms"]
    if since is None:
        return rows
    if doc["unproven"]:
        kind, detail = "unproven_success", "succeeded without a matching preimage"
    elif doc["escalated"] is not None:
        kind, detail = "escalated", doc["escalated"]
    elif doc["doubt_reason"] is not None:
        kind, detail = "in_doubt", f"node could not prove the outcome ({doc['doubt_reason']})"
    elif now_ms - since >= stuck_after_ms:
        kind, detail = "in_doubt", f"{doc['state']} for {(now_ms - since) // 1000} s"
    else:
        return rows
    rows.append({"intent_id": doc["intent_id"], "kind": kind, "since_ms": since,
                 "region": doc["region"], "node": doc["node"], "detail": detail})  # fmt: skip
    return rows
