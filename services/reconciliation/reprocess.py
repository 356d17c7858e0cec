"""Reprocessing an intent that awaits evidence: ask its node again and act only on the node's
proof (ADR 0161). Transport-free: the CLI (``corridor exceptions reprocess``) and the HTTP API
(``POST /v1/exceptions/.../reprocess``) pass their own lookup, send and reread, so both windows
resolve through the same rule, and reprocessing twice has the effect of once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from schemas import limits

# Kinds an operator settles or fails through ``ResolvePaymentIntent`` (ADR 0076).
AWAITING_EVIDENCE_KINDS: Final = ("in_doubt", "escalated", "unproven_success")
# A node's failure text copied into evidence is bounded: the rest of the record must fit.
NODE_DETAIL_CHARS_MAX: Final = 200


async def reprocess_intent(
    target: dict[str, Any],
    doc: dict[str, Any] | None,
    *,
    lookup: Callable[[str], Awaitable[Any]],
    send: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    reread: Callable[[str], Awaitable[dict[str, Any] | None]],
) -> dict[str, Any]:
    """One intent awaiting evidence, asked again of its node (``lookup``): resolved through
    ``send`` (a ``ResolvePaymentIntent`` without version and operator) only on the node's
    proof; unchanged otherwise. Whatever the transport: the CLI's, the HTTP API's."""
    from services.lightning.port import PaymentFailed, PaymentSucceeded

    intent_id, kind = target["intent_id"], target["kind"]
    payment_hash = doc.get("payment_hash") if doc else None
    if doc is None or payment_hash is None:
        return {
            "id": intent_id,
            "kind": kind,
            "action": "none",
            "detail": "no payment hash known for its attempt: nothing to ask the node",
        }
    record = await lookup(payment_hash)
    proven = isinstance(record, PaymentSucceeded) and _proves(record.preimage, payment_hash)
    if not proven and not isinstance(record, PaymentFailed):
        said = "has no record of it" if record is None else f"says {type(record).__name__}"
        return {
            "id": intent_id,
            "kind": kind,
            "action": "none",
            "detail": f"node {target['node']} {said}: unchanged",
        }
    evidence = node_evidence(target, payment_hash, record)
    body: dict[str, Any] = {"type": "ResolvePaymentIntent", "intent_id": intent_id,
                            "evidence": evidence}  # fmt: skip
    if isinstance(record, PaymentSucceeded):
        body |= {"resolution": "settled", "preimage": record.preimage, "fee_msat": record.fee_msat}
    else:
        body["resolution"] = "not_paid"
    reply = await send(body)
    if reply.get("ok"):
        return {"id": intent_id, "kind": kind, "action": "resolved",
                "detail": f"{body['resolution']} on node {target['node']}'s record; "
                          f"now {reply.get('state')}"}  # fmt: skip
    # Another operator (or the executor's own report) ended it between our read and our
    # command: the engine refuses a second resolution, which is the replay-safe outcome.
    after = await reread(intent_id)
    if after is not None and after["on_wire_since_ms"] is None:
        return {
            "id": intent_id,
            "kind": kind,
            "action": "none",
            "detail": f"already {after['state']}: unchanged",
        }
    error = reply.get("error") or {}
    return {
        "id": intent_id,
        "kind": kind,
        "action": "refused",
        "detail": f"{error.get('code')}: {error.get('message')}",
    }


def _proves(preimage: str, payment_hash: str) -> bool:
    try:
        return hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == payment_hash
    except ValueError:
        return False


def node_evidence(target: dict[str, Any], payment_hash: str, record: Any) -> str:
    """The node's record as compact JSON: what the resolution rests on, kept in the log."""
    from services.lightning.port import PaymentSucceeded

    facts: dict[str, Any] = {"source": "corridor exceptions reprocess", "node": target["node"],
                             "region": target["region"], "payment_hash": payment_hash,
                             "looked_up_at_ms": time.time_ns() // 1_000_000}  # fmt: skip
    if isinstance(record, PaymentSucceeded):
        facts |= {"status": "succeeded", "preimage": record.preimage,
                  "amount_msat": record.amount_msat, "fee_msat": record.fee_msat}  # fmt: skip
    else:
        facts |= {"status": "failed", "reason": str(record.reason),
                  "detail": record.detail[:NODE_DETAIL_CHARS_MAX]}  # fmt: skip
    text = json.dumps(facts, separators=(",", ":"), sort_keys=True)
    assert len(text) <= limits.EVIDENCE_CHARS_MAX, "a node record's facts are bounded"
    return text
