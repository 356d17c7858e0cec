"""Who sent a message, as the transport authenticated it (ADR 0061).

NATS does not tell a subscriber who published; each credential may publish only on subjects
ending in its own id, so the subject's last token is the authenticated identity. A
``Principal`` is that identity, with the role its credential has. It is what the log records
as ``actor``; a payload's own identity fields (``claimed_identity``) must agree with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import commands as cmd
from schemas.agent_key_messages import (
    AgentKeyCommand,
    ApproveAgentKey,
    ProposeAgentKey,
    RevokeAgentKey,
)
from schemas.policy_messages import ApprovePolicy, PolicyCommand, ProposePolicy
from schemas.rebalance_messages import ApproveRebalance, RequestRebalance
from schemas.receive_messages import CreateReceiveIntent, ReceiveCommand, RecordInvoiceState
from schemas.reconciliation_messages import (
    ClearNodeBreaker,
    ReconciliationCommand,
    ReportReconciliation,
    ResolveReconciliationMismatch,
)
from schemas.webhook_messages import (
    DisableWebhookEndpoint,
    RecordWebhookDeliveryFailed,
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
    WebhookCommand,
)
from services.identity.registry import ID_PATTERN, Role


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    id: str

    def __post_init__(self) -> None:
        assert ID_PATTERN.match(self.id), f"a principal's id is a subject token: {self.id!r}"

    @property
    def actor(self) -> str:
        """The event metadata's ``actor``: ``caller:alice``, ``executor:us-lnd``..."""
        return f"{self.role}:{self.id}"


def claimed_identity(
    command: cmd.Command
    | PolicyCommand
    | AgentKeyCommand
    | ReconciliationCommand
    | WebhookCommand
    | ReceiveCommand
    | RequestRebalance
    | ApproveRebalance,
) -> tuple[str, str] | None:
    """``(field, value)``: who the payload says sent it, or ``None`` for the engine's own
    commands. The one place that knows which field of each command names its sender."""
    match command:
        case (
            cmd.SubmitPaymentIntent()
            | cmd.CancelPaymentIntent()
            | CreateReceiveIntent()
            | RequestRebalance()
        ):
            return "caller.id", command.caller.id
        case (
            cmd.ApprovePaymentIntent()
            | cmd.RejectPaymentIntent()
            | cmd.ResolvePaymentIntent()
            | cmd.AcknowledgeAnomaly()
            | ApproveRebalance()
        ):
            return "operator_id", command.operator_id
        case ProposePolicy():
            return "proposer_id", command.proposer_id
        case ApprovePolicy() | ApproveAgentKey():
            return "approver_id", command.approver_id
        case ProposeAgentKey():
            return "proposer_id", command.proposer_id
        case RevokeAgentKey():
            return "revoker_id", command.revoker_id
        case ReportReconciliation():
            # A reconciler's id is the name of the one node it reconciles.
            return "node", command.node
        case ResolveReconciliationMismatch() | ClearNodeBreaker():
            return "operator_id", command.operator_id
        case cmd.RecordPaymentOutcome() | RecordInvoiceState():
            # An executor's id is the name of the one node it reports for.
            return "node", command.node
        case RegisterWebhookEndpoint() | RemoveWebhookEndpoint():
            return "caller_id", command.caller_id
        case cmd.ExpirePaymentIntent() | cmd.EscalatePaymentIntent():
            return None
        case DisableWebhookEndpoint() | RecordWebhookDeliveryFailed():
            # The dispatcher's, inside the engine's deployment (ADR 0175).
            return None
    raise AssertionError(f"unhandled command {type(command).__name__}")
