"""A command on its way through the writer loop: the envelope, what is derived from it before
it is queued, and the replies the loop gives."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from schemas import channel_messages as cm
from schemas import commands as cmd
from schemas import errors
from schemas import jit_messages as jm
from schemas import lsp_messages as lm
from schemas import payee_messages as pm
from schemas.agent_key_messages import AgentKeyCommand, AgentKeyCommandAccepted
from schemas.events import InvoiceFacts
from schemas.policy_messages import ApprovePolicy, PolicyCommand, ProposePolicy
from schemas.rebalance_messages import ApproveRebalance, RequestRebalance
from schemas.receive_messages import CreateReceiveIntent, ReceiveCommand, RecordInvoiceState
from schemas.reconciliation_messages import (
    ReconciliationCommand,
    ReconciliationCommandAccepted,
    reconciliation_stream,
)
from schemas.replies import CommandAccepted, CommandRejected, PolicyCommandAccepted
from schemas.webhook_messages import WebhookCommand, WebhookCommandAccepted, webhook_stream
from services.bolt11.codec import InvoiceDecodeError, decode_invoice
from services.domain.agent_keys import AGENT_KEYS_STREAM
from services.domain.lsp_orders.ids import lsp_order_id_for
from services.domain.principal import Principal, claimed_identity
from services.engine.agent_key_planning import AGENT_KEY_COMMANDS
from services.engine.event_codec import POLICY_STREAM
from services.engine.ids import (
    channel_op_id_for,
    fingerprint,
    intent_id_for,
    jit_sale_id_for,
    jit_scid_for,
    payee_id_for,
    rebalance_id_for,
    receive_id_for,
)
from services.engine.reconciliation_planning import RECONCILIATION_COMMANDS
from services.engine.webhook_planning import WEBHOOK_COMMANDS, endpoint_of
from services.identity.agent_keys import AgentKey

Reply = (
    CommandAccepted
    | PolicyCommandAccepted
    | AgentKeyCommandAccepted
    | ReconciliationCommandAccepted
    | WebhookCommandAccepted
    | CommandRejected
)


# Commands that name no sender in the payload: the credential alone does (ADR 0234, 0270).
_CREDENTIAL_ONLY = (
    *cm.CHANNEL_OP_COMMAND_TYPES,
    *pm.PAYEE_COMMAND_TYPES,
    *jm.JIT_COMMAND_TYPES,
    *lm.LSP_ORDER_COMMAND_TYPES,  # ADR 0252
)


@dataclass(frozen=True, slots=True)
class CommandEnvelope:
    command: (
        cmd.Command
        | PolicyCommand
        | AgentKeyCommand
        | ReconciliationCommand
        | WebhookCommand
        | ReceiveCommand
        | cm.ChannelOpCommand
        | RequestRebalance
        | ApproveRebalance
        | jm.JitCommand
        | pm.PayeeCommand
        | lm.LspOrderCommand
    )
    correlation_id: str | None = None
    causation_id: str | None = None
    # Who sent it, as the intake authenticated it (ADR 0061); ``None`` for the engine's own
    # commands (deadlines). The log's ``actor``.
    principal: Principal | None = None
    # The agent key whose signature the intake verified (ADR 0066); its limits and sponsor
    # are judged again, from the current keys, when the command is decided (ADR 0068).
    agent_key: AgentKey | None = None
    # The sender's W3C trace context, if it sent one (ADR 0154): the decision is its child.
    traceparent: str | None = None

    def __post_init__(self) -> None:
        # Channel operations name no sender in the payload: the credential alone does (ADR 0234).
        # So do payees' commands (ADR 0270), JIT sales' (ADR 0261) and LSP orders' (ADR 0252).
        if self.principal is not None and not isinstance(self.command, _CREDENTIAL_ONLY):
            claimed = claimed_identity(self.command)
            assert claimed is not None and claimed[1] == self.principal.id, (
                "the intake binds every command to the identity its payload names"
            )


@dataclass(slots=True)
class QueuedCommand:
    envelope: CommandEnvelope
    future: asyncio.Future[Reply] | None = None
    stream_id: str = ""
    request_fingerprint: str | None = None
    invoice: InvoiceFacts | None = None
    error: errors.CorridorError | None = None
    prepared: bool = False
    # Set after a conflict: read this item's stream from the log even if it is a submit.
    reload: bool = False


def prepare(item: QueuedCommand) -> None:
    """The stream, fingerprint and decoded invoice: they depend on no state."""
    item.prepared = True
    item.error = None
    command = item.envelope.command
    if isinstance(command, ProposePolicy | ApprovePolicy):
        item.stream_id = POLICY_STREAM
        return
    if isinstance(command, AGENT_KEY_COMMANDS):
        item.stream_id = AGENT_KEYS_STREAM
        return
    if isinstance(command, RECONCILIATION_COMMANDS):
        item.stream_id = reconciliation_stream(command.node)
        return
    if isinstance(command, WEBHOOK_COMMANDS):
        item.stream_id = webhook_stream(endpoint_of(command))
        return
    if isinstance(command, CreateReceiveIntent):
        item.stream_id = receive_id_for(command.caller.id, command.idempotency_key)
        item.request_fingerprint = fingerprint(command)
        return
    if isinstance(command, RequestRebalance):  # ADR 0244
        item.stream_id = rebalance_id_for(command.caller.id, command.idempotency_key)
        item.request_fingerprint = fingerprint(command)
        if command.payment_request is not None and item.invoice is None:  # ADR 0248
            _decode_invoice(item, command.payment_request)
        return
    if isinstance(command, ApproveRebalance):
        item.stream_id = command.rebalance_id
        return
    if isinstance(command, RecordInvoiceState):
        item.stream_id = command.intent_id
        return
    if isinstance(command, lm.RecordLspOrderReport):  # ADR 0252
        item.stream_id = command.lsp_order_id
        return
    if isinstance(command, lm.OrderLspChannel):
        principal = item.envelope.principal
        item.stream_id = lsp_order_id_for(
            principal.id if principal else "corridor", command.idempotency_key
        )
        item.request_fingerprint = fingerprint(command)
        return
    if isinstance(command, cm.RecordChannelOpReport):  # ADR 0234
        item.stream_id = command.op_id
        return
    if isinstance(command, jm.SellJitChannel):  # ADR 0261
        scid = jit_scid_for(command.node, command.client_pubkey, command.request_id)
        item.stream_id = jit_sale_id_for(command.node, scid)
        return
    if isinstance(command, jm.RecordJitHtlc | jm.RecordJitReport):
        item.stream_id = command.sale_id
        return
    if isinstance(command, pm.OnboardPayee):  # ADR 0270: like a channel operation
        principal = item.envelope.principal
        item.stream_id = payee_id_for(
            principal.id if principal else "corridor", command.idempotency_key
        )
        item.request_fingerprint = fingerprint(command)
        return
    if isinstance(command, pm.ErasePayee):
        item.stream_id = command.payee_id
        return
    if isinstance(command, cm.OpenChannel | cm.CloseChannel):
        # The operator's id from the credential and its key name the operation.
        principal = item.envelope.principal
        item.stream_id = channel_op_id_for(
            principal.id if principal else "corridor", command.idempotency_key
        )
        item.request_fingerprint = fingerprint(command)
        return
    if not isinstance(command, cmd.SubmitPaymentIntent):
        item.stream_id = command.intent_id
        return
    item.stream_id = intent_id_for(command.caller.id, command.idempotency_key)
    item.request_fingerprint = fingerprint(command)
    if command.payment_request is not None and item.invoice is None:
        _decode_invoice(item, command.payment_request)


def _decode_invoice(item: QueuedCommand, payment_request: str) -> None:
    """``item.invoice`` from the request's BOLT 11 invoice, or ``item.error`` saying why not."""
    try:
        decoded = decode_invoice(payment_request)
    except InvoiceDecodeError as exc:
        item.error = errors.InvalidInvoice(
            f"payment_request is not a valid BOLT 11 invoice: {exc.message}",
            field="payment_request",
        )
        return
    item.invoice = InvoiceFacts(
        payment_hash=decoded.payment_hash,
        payee=decoded.destination,
        network=decoded.network,
        amount_msat=decoded.amount_msat,
        created_at_s=decoded.created_at_s,
        expires_at_s=decoded.created_at_s + decoded.expiry_s,
    )


def assumed_new(item: QueuedCommand) -> bool:
    """A submit whose intent this engine has not cached is taken to be new, without reading
    the log: most are, and for the others the append fails on the idempotency claim and the
    stream's version, and the batch is decided again with the stream read (``WriterLoop``)."""
    # An agent's submit is read all the same: its key's limits are judged only for a new
    # intent, and a retry of one already logged must get its intent, not a limit refusal.
    return (
        isinstance(item.envelope.command, cmd.SubmitPaymentIntent)
        and not item.reload
        and item.envelope.agent_key is None
    )


def actor(envelope: CommandEnvelope) -> str:
    """The authenticated sender; for an envelope built inside the engine (deadlines, tests),
    the sender its command names, in the roles the subjects give them."""
    if envelope.principal is not None:
        return envelope.principal.actor
    if isinstance(envelope.command, _CREDENTIAL_ONLY):
        return "corridor"
    claimed = claimed_identity(envelope.command)
    if claimed is None:
        return "corridor"
    field, ident = claimed
    role = {"caller.id": "caller", "caller_id": "caller", "node": "executor"}.get(field, "operator")
    if isinstance(envelope.command, RECONCILIATION_COMMANDS) and field == "node":
        role = "reconciler"
    return f"{role}:{ident}"


def rejected(error: errors.CorridorError) -> CommandRejected:
    return CommandRejected(error=error.detail())
