"""Our log against a node's own record: which payments disagree, and how (issue 15).

Pure: the worker hands in our attempts on one node (folded from the log by ``attempts.py``)
and the node's records of the hashes it examined; time arrives as ``now_ms``. A hash in
``node_records`` with the value ``None`` means the node was asked and has no record of it; a
hash absent from ``node_records`` was not examined this pass and is judged only for the
in-flight bound, which needs no node.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

AttemptStatus = Literal["in_flight", "succeeded", "failed"]


class Category(enum.StrEnum):
    FAILED_BUT_NODE_PAID = "failed_but_node_paid"  # we say failed, the node says paid
    PAID_BUT_NODE_NOT = "paid_but_node_not"  # we say paid, the node has no record or failed
    STUCK_IN_FLIGHT = "stuck_in_flight"  # in flight on our side past the bound
    AMOUNT_MISMATCH = "amount_mismatch"  # amount or fee differ from what we recorded
    UNEXPECTED_PAYMENT = "unexpected_payment"  # the node paid something we never dispatched
    # Receives (ADR 0220, ``receipts.py``): the node settled our invoice and our log did not
    # credit it, or the reverse.
    PAID_NOT_CREDITED = "paid_not_credited"
    CREDITED_BUT_NODE_NOT = "credited_but_node_not"


@dataclass(frozen=True, slots=True)
class OurAttempt:
    """One attempt as our log holds it, on the node being reconciled."""

    intent_id: str
    attempt: int
    payment_hash: str
    amount_msat: int
    status: AttemptStatus
    dispatched_at_ms: int
    fee_msat: int | None = None  # known once we recorded a success


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """The node's record of one hash (its list entries merged by ``merge``)."""

    payment_hash: str
    status: AttemptStatus
    amount_msat: int
    fee_msat: int
    created_at_s: int | None = None  # None: not known (a single look-up does not say)


@dataclass(frozen=True, slots=True)
class Mismatch:
    category: Category
    payment_hash: str
    intent_id: str | None = None
    attempt: int | None = None
    evidence: dict[str, str | int | None] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The same disagreement found twice has the same key: one exception item."""
        return f"{self.category}:{self.payment_hash}"


_RANK: dict[AttemptStatus, int] = {"failed": 0, "in_flight": 1, "succeeded": 2}


def merge(records: Iterable[NodeRecord]) -> dict[str, NodeRecord]:
    """One record per hash: paid if any entry is, else in flight if any is, else failed
    (how CLN's listpays merges its groups; lnd lists a hash sent again as a second entry)."""
    merged: dict[str, NodeRecord] = {}
    for record in records:
        held = merged.get(record.payment_hash)
        if held is None or _RANK[record.status] >= _RANK[held.status]:
            merged[record.payment_hash] = record
    return merged


def ours_by_hash(attempts: Iterable[OurAttempt]) -> dict[str, OurAttempt]:
    """Our verdict per hash on this node, by the same rule as ``merge``; among equals the
    latest attempt speaks (a hash sent again after a proven failure)."""
    chosen: dict[str, OurAttempt] = {}
    for attempt in attempts:
        held = chosen.get(attempt.payment_hash)
        better = held is None or (_RANK[attempt.status], attempt.attempt) >= (
            _RANK[held.status],
            held.attempt,
        )
        if better:
            chosen[attempt.payment_hash] = attempt
    return chosen


def compare(
    ours: Iterable[OurAttempt],
    node_records: Mapping[str, NodeRecord | None],
    *,
    now_ms: int,
    in_flight_bound_ms: int,
    unexpected_since_s: int = 0,
) -> list[Mismatch]:
    """Every disagreement, ordered by hash then category.

    ``unexpected_since_s``: node records created before it are not judged as unexpected (they
    may be older than the part of our log the worker read).
    """
    assert in_flight_bound_ms > 0, "in_flight_bound_ms must be positive"
    mine = ours_by_hash(ours)
    found: list[Mismatch] = []
    for payment_hash, attempt in mine.items():
        if payment_hash in node_records:
            found += _judge(attempt, node_records[payment_hash])
        stuck_ms = now_ms - attempt.dispatched_at_ms
        if attempt.status == "in_flight" and stuck_ms > in_flight_bound_ms:
            record = node_records.get(payment_hash)
            found.append(
                _mismatch(Category.STUCK_IN_FLIGHT, attempt, record, in_flight_ms=stuck_ms)
            )
    for payment_hash, record in node_records.items():
        unexpected = (
            record is not None
            and payment_hash not in mine
            and record.status != "failed"  # nothing left the node
            and (record.created_at_s is None or record.created_at_s >= unexpected_since_s)
        )
        if unexpected:
            assert record is not None
            found.append(
                Mismatch(
                    category=Category.UNEXPECTED_PAYMENT,
                    payment_hash=payment_hash,
                    evidence=_node_evidence(record),
                )
            )
    return sorted(found, key=lambda m: (m.payment_hash, m.category))


def _judge(attempt: OurAttempt, record: NodeRecord | None) -> list[Mismatch]:
    if attempt.status == "failed" and record is not None and record.status == "succeeded":
        return [_mismatch(Category.FAILED_BUT_NODE_PAID, attempt, record)]
    if attempt.status == "succeeded":
        if record is None or record.status == "failed":
            return [_mismatch(Category.PAID_BUT_NODE_NOT, attempt, record)]
        differs = record.status == "succeeded" and (
            record.amount_msat != attempt.amount_msat
            or (attempt.fee_msat is not None and record.fee_msat != attempt.fee_msat)
        )
        if differs:
            return [_mismatch(Category.AMOUNT_MISMATCH, attempt, record)]
    return []


def _mismatch(
    category: Category, attempt: OurAttempt, record: NodeRecord | None, **more: int
) -> Mismatch:
    evidence: dict[str, str | int | None] = {
        "our_status": attempt.status,
        "our_amount_msat": attempt.amount_msat,
        "our_fee_msat": attempt.fee_msat,
    }
    evidence.update(_node_evidence(record))
    evidence.update(more)
    return Mismatch(
        category=category,
        payment_hash=attempt.payment_hash,
        intent_id=attempt.intent_id,
        attempt=attempt.attempt,
        evidence=evidence,
    )


def _node_evidence(record: NodeRecord | None) -> dict[str, str | int | None]:
    if record is None:
        return {"node_status": "no_record"}
    return {
        "node_status": record.status,
        "node_amount_msat": record.amount_msat,
        "node_fee_msat": record.fee_msat,
    }
