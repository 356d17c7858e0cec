"""What planning one batch produces: the events and claims to append, the replies to give once
they commit, and the new views to adopt then. Nothing is adopted before the commit."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.domain.channel_ops import ChannelOp
from services.domain.intent import PaymentIntent
from services.domain.jit_channels import JitChannel
from services.domain.lsp_orders import LspOrder
from services.domain.payees import Payee
from services.domain.policy import Policy, PolicyDocumentAggregate
from services.domain.rebalance import DayBudget, Rebalance
from services.domain.receive import ReceiveIntent
from services.domain.reconciliation.ledger import NodeLedger
from services.domain.webhooks.endpoint import Endpoint
from services.engine.agent_key_book import AgentKeyBook
from services.engine.commands import Reply
from services.eventstore.port import IdempotencyClaim, NewEvent


@dataclass(slots=True)
class BatchPlan:
    policy_state: PolicyDocumentAggregate | None
    policy_changed: bool = False
    agent_keys: AgentKeyBook | None = None  # a new view, when the batch changed the keys
    ledgers: dict[str, NodeLedger] = field(default_factory=dict)  # nodes' reconciliation
    webhooks: dict[str, Endpoint] = field(default_factory=dict)  # endpoints (ADR 0175)
    replies: list[Reply] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    claims: list[IdempotencyClaim] = field(default_factory=list)
    states: dict[str, PaymentIntent | None] = field(default_factory=dict)
    receives: dict[str, ReceiveIntent] = field(default_factory=dict)  # ADR 0220
    channel_ops: dict[str, ChannelOp] = field(default_factory=dict)  # ADR 0234
    rebalances: dict[str, Rebalance] = field(default_factory=dict)  # ADR 0244
    lsp_orders: dict[str, LspOrder] = field(default_factory=dict)  # ADR 0252
    rebalance_budgets: dict[str, DayBudget] = field(default_factory=dict)  # ADR 0245
    jit_sales: dict[str, JitChannel] = field(default_factory=dict)  # ADR 0261
    payees: dict[str, Payee] = field(default_factory=dict)  # ADR 0270
    # Callers whose spend this batch judged or changed: the append fences them (ADR 0073).
    spend_callers: set[str] = field(default_factory=set)
    judged_submits: bool = False
    # Set by an activation inside this batch: the batch's later submits are judged with it.
    activated: Policy | None = None
