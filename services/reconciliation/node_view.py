"""The node's answers through ``NodePort`` as the comparison's ``NodeRecord``s."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from services.domain.reconciliation.compare import NodeRecord
from services.lightning.port import (
    NodePaymentRecord,
    NodePort,
    PaymentFailed,
    PaymentResult,
    PaymentSucceeded,
)

# Look-ups of single hashes per pass (our newly final attempts, open items): each is one node
# call; past this many the rest wait for the next pass, so a backlog cannot stall the node.
LOOKUPS_PER_PASS_MAX: Final = 500


def from_list(record: NodePaymentRecord) -> NodeRecord:
    return NodeRecord(
        payment_hash=record.payment_hash,
        status=record.status,
        amount_msat=record.amount_msat,
        fee_msat=record.fee_msat,
        created_at_s=record.created_at_s,
    )


def from_result(result: PaymentResult) -> NodeRecord:
    if isinstance(result, PaymentSucceeded):
        return NodeRecord(
            payment_hash=result.payment_hash, status="succeeded",
            amount_msat=result.amount_msat, fee_msat=result.fee_msat,
        )  # fmt: skip
    if isinstance(result, PaymentFailed):
        return NodeRecord(
            payment_hash=result.payment_hash, status="failed", amount_msat=0, fee_msat=0
        )
    return NodeRecord(
        payment_hash=result.payment_hash, status="in_flight",
        amount_msat=result.amount_msat or 0, fee_msat=0,
    )  # fmt: skip


async def look_up(
    adapter: NodePort, hashes: Collection[str]
) -> tuple[dict[str, NodeRecord | None], bool]:
    """The node's record of each hash (``None``: none), and whether all were asked."""
    found: dict[str, NodeRecord | None] = {}
    for payment_hash in sorted(hashes)[:LOOKUPS_PER_PASS_MAX]:
        result = await adapter.lookup_payment(payment_hash)
        found[payment_hash] = None if result is None else from_result(result)
    return found, len(hashes) <= LOOKUPS_PER_PASS_MAX
