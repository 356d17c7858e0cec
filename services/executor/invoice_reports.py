"""What the receiver and the settlement follower of a node share (ADR 0220, 0221): the node
of one region they act for, the executor's receive secret (``receive_preimage``) and the
engine they report to; and the reports made from the node's record of an invoice, which the
expiry watch sends too."""

from __future__ import annotations

from collections.abc import Callable

from schemas.receive_messages import RecordInvoiceState
from services.executor.engine_client import EngineClient
from services.lightning.port import InvoiceStatus, NodePort


class NodeInvoices:
    """The base of ``Receiver`` and ``InvoiceFollower``: one node and what it reports as."""

    def __init__(
        self,
        node: NodePort,
        *,
        secret: bytes,
        region: str,
        node_name: str,
        engine: Callable[[], EngineClient],
    ) -> None:
        self._node = node
        self._secret = secret
        self._region = region
        self._node_name = node_name
        self._engine = engine


def paid_report(
    intent_id: str, node_name: str, region: str, record: InvoiceStatus
) -> RecordInvoiceState:
    return RecordInvoiceState(
        intent_id=intent_id, node=node_name, region=region, state="paid",
        payment_hash=record.payment_hash, payment_request=record.payment_request,
        expires_at_s=record.expires_at_s, preimage=record.preimage,
        amount_received_msat=record.amount_received_msat, pay_index=record.pay_index or None,
        paid_at_s=record.paid_at_s,
    )  # fmt: skip


def ended_report(
    intent_id: str, node_name: str, region: str, record: InvoiceStatus
) -> RecordInvoiceState | None:
    """What the node's record says ended, if it did: paid, or expired (lnd reports an expired
    invoice cancelled). ``None`` while it is open or its HTLCs are held."""
    if record.state == "paid":
        return paid_report(intent_id, node_name, region, record)
    if record.state in ("expired", "cancelled"):
        return RecordInvoiceState(
            intent_id=intent_id, node=node_name, region=region, state="expired",
            payment_hash=record.payment_hash,
        )  # fmt: skip
    return None
