"""Every NATS subject and stream name Corridor uses, in one place (documented in the README)."""

from typing import Final

API_PREFIX: Final = "corridor.api.v1.intents"
API_GET: Final = f"{API_PREFIX}.get"
API_STATUS: Final = f"{API_PREFIX}.status"
# corridor.api.v1.intents.<verb>.<caller_id>: request/reply, answered after commit.
API_WILDCARD: Final = f"{API_PREFIX}.>"

# corridor.api.v1.policy.<verb>.<operator_id>: policy changes under the two-person rule.
POLICY_API_PREFIX: Final = "corridor.api.v1.policy"
POLICY_API_WILDCARD: Final = f"{POLICY_API_PREFIX}.>"
POLICY_VERBS: Final = {"propose": "ProposePolicy", "approve": "ApprovePolicy"}
# Read-only queries answered from the running engine's memory (what it enforces right now).
# One token after the prefix, so they can never parse as <verb>.<operator_id> commands.
POLICY_SHOW: Final = f"{POLICY_API_PREFIX}.show"  # GetPolicy -> PolicyView
POLICY_CORRIDORS: Final = f"{POLICY_API_PREFIX}.corridors"  # ListCorridors -> CorridorsView

# corridor.api.v1.agents.<verb>.<principal_id>: agent signing keys under the two-person rule
# (ADR 0068); ``list.<role>.<id>`` reads them (the engine decides what each reader sees).
AGENTS_API_PREFIX: Final = "corridor.api.v1.agents"
AGENTS_API_WILDCARD: Final = f"{AGENTS_API_PREFIX}.>"
AGENT_KEY_VERBS: Final = {
    "propose": "ProposeAgentKey",
    "approve": "ApproveAgentKey",
    "revoke": "RevokeAgentKey",
}
AGENTS_LIST: Final = f"{AGENTS_API_PREFIX}.list"

CMD_PREFIX: Final = "corridor.cmd.v1.intents"
CMD_WILDCARD: Final = "corridor.cmd.v1.>"
CMD_STREAM: Final = "CORRIDOR_CMD"
CMD_CONSUMER: Final = "corridor-intake"

# Events, version 2 (ADR 0067): an intent's events under its owner's subtree,
# corridor.evt.v2.intent.<owner_caller_id>.<EventType>, so a caller's permissions can name
# exactly its own; policy events on corridor.evt.v2.policy.<EventType>, checkpoints on
# corridor.evt.v2.log.<EventType>. Version 1 (corridor.evt.v1.intent.<EventType>) is what
# the stream holds from before; CORRIDOR_EVT takes both (EVT_WILDCARD).
EVT_ROOT: Final = "corridor.evt"
EVT_WILDCARD: Final = f"{EVT_ROOT}.>"
EVT_V1_PREFIX: Final = f"{EVT_ROOT}.v1"
EVT_PREFIX: Final = f"{EVT_ROOT}.v2"
EVT_INTENT_PREFIX: Final = f"{EVT_PREFIX}.intent"
EVT_POLICY_PREFIX: Final = f"{EVT_PREFIX}.policy"
EVT_LOG_PREFIX: Final = f"{EVT_PREFIX}.log"
# An intent event whose owner cannot be found (a log written by hand): no caller's subtree.
EVT_UNOWNED_PREFIX: Final = f"{EVT_PREFIX}.unowned"
EVT_STREAM: Final = "CORRIDOR_EVT"

# Work orders for region executors: every IntentDispatched event is also published here,
# one subject per (region, node), so each node's workers consume only their own work.
DISPATCH_PREFIX: Final = "corridor.dispatch.v1"
DISPATCH_WILDCARD: Final = f"{DISPATCH_PREFIX}.>"
DISPATCH_STREAM: Final = "CORRIDOR_DISPATCH"

# Signed checkpoints of the log's hash chain (ADR 0065): a stream nobody may delete from or
# purge, so whoever can rewrite the events table cannot also remove the signed heads.
CHECKPOINT_PREFIX: Final = "corridor.checkpoints.v1"
CHECKPOINT_SUBJECT: Final = f"{CHECKPOINT_PREFIX}.log"
CHECKPOINT_WILDCARD: Final = f"{CHECKPOINT_PREFIX}.>"
CHECKPOINT_STREAM: Final = "CORRIDOR_CHECKPOINTS"

# Node health and liquidity, published by region executors (core NATS, latest wins).
HEALTH_PREFIX: Final = "corridor.health.v1"
HEALTH_WILDCARD: Final = f"{HEALTH_PREFIX}.>"
# Each node's channels, one snapshot per health interval (core NATS, latest wins; ADR 0240).
LIQUIDITY_PREFIX: Final = "corridor.liquidity.v1"
LIQUIDITY_WILDCARD: Final = f"{LIQUIDITY_PREFIX}.>"

# corridor.api.v1.recon.<verb>.<id>: reconciliation against the nodes' records (ADR 0151).
# ``report.<node>`` is a region's reconciler; ``resolve``/``clear.<operator_id>`` an operator.
RECON_API_PREFIX: Final = "corridor.api.v1.recon"
RECON_API_WILDCARD: Final = f"{RECON_API_PREFIX}.>"
RECON_VERBS: Final = {
    "report": "ReportReconciliation",
    "resolve": "ResolveReconciliationMismatch",
    "clear": "ClearNodeBreaker",
}

# corridor.api.v1.webhooks.<verb>.<caller_id>: a caller's webhook endpoints (ADR 0175).
WEBHOOKS_API_PREFIX: Final = "corridor.api.v1.webhooks"
WEBHOOKS_API_WILDCARD: Final = f"{WEBHOOKS_API_PREFIX}.>"
WEBHOOK_VERBS: Final = {"register": "RegisterWebhookEndpoint", "remove": "RemoveWebhookEndpoint"}
WEBHOOKS_LIST: Final = f"{WEBHOOKS_API_PREFIX}.list"  # .<caller_id>: ListWebhookEndpoints

DLQ_PREFIX: Final = "corridor.dlq.v1.cmd"
# corridor.dlq.v1.dispatch.<region>.<node>: work orders an executor refused (ADR 0063).
DLQ_DISPATCH_PREFIX: Final = "corridor.dlq.v1.dispatch"
DLQ_WILDCARD: Final = "corridor.dlq.v1.>"
DLQ_STREAM: Final = "CORRIDOR_DLQ"
# corridor.api.v1.dlq.<list|replay|drop>.<operator_id>: the dead-letter desk (ADR 0080).
DLQ_API_PREFIX: Final = "corridor.api.v1.dlq"

INTAKE_QUEUE_GROUP: Final = "corridor-intake"

# Verb token -> command type it must carry. The last token is the caller (or operator,
# or executor) id, which a later issue binds to NATS credentials.
VERBS: Final = {
    "submit": "SubmitPaymentIntent",
    "cancel": "CancelPaymentIntent",
    "approve": "ApprovePaymentIntent",
    "reject": "RejectPaymentIntent",
    "resolve": "ResolvePaymentIntent",
    "acknowledge": "AcknowledgeAnomaly",
    "outcome": "RecordPaymentOutcome",
}

# Receive intents (ADR 0220), request/reply only under the intents prefix: a caller's
# ``receive.<caller_id>``, an executor's ``invoice.<node>`` report. Not on CORRIDOR_CMD.
RECEIVE_VERBS: Final = {"receive": "CreateReceiveIntent", "invoice": "RecordInvoiceState"}
# Channel operations (ADR 0234), request/reply under the intents prefix: an operator's
# ``channel_open.<operator_id>`` and ``channel_close.<operator_id>``, the node's executor's
# ``channel_report.<node>``. Not on CORRIDOR_CMD.
CHANNEL_VERBS: Final = {
    "channel_open": "OpenChannel",
    "channel_close": "CloseChannel",
    "channel_report": "RecordChannelOpReport",
}
# JIT channel sales (ADR 0261), request/reply under the intents prefix: the LSP node's
# executor's ``jit_sell.<node>``, ``jit_htlc.<node>`` and ``jit_report.<node>``.
JIT_VERBS: Final = {
    "jit_sell": "SellJitChannel",
    "jit_htlc": "RecordJitHtlc",
    "jit_report": "RecordJitReport",
}
# Payees (ADR 0270), request/reply under the intents prefix: an operator's
# ``payee_onboard.<operator_id>`` and ``payee_erase.<operator_id>``. Not on CORRIDOR_CMD.
PAYEE_VERBS: Final = {"payee_onboard": "OnboardPayee", "payee_erase": "ErasePayee"}

# Rebalances (ADR 0244): the planner's (a service caller's) ``rebalance.<caller_id>``; the
# executor reports on ``outcome.<node>`` as for a payment. Not on CORRIDOR_CMD.
REBALANCE_VERBS: Final = {
    "rebalance": "RequestRebalance",
    "rebalance_approve": "ApproveRebalance",  # an operator's, for tier approval
}

# LSP orders (ADR 0252): an operator's or a service caller's ``order.<id>``; the executor of
# the order's node reports on ``report.<node>``; ``get.<role>.<id>`` reads an order.
LSP_API_PREFIX: Final = "corridor.api.v1.lsp"
LSP_API_WILDCARD: Final = f"{LSP_API_PREFIX}.>"
LSP_VERBS: Final = {"order": "OrderLspChannel", "report": "RecordLspOrderReport"}
LSP_GET: Final = f"{LSP_API_PREFIX}.get"
# ``info.<node>``: the LSP's options, asked by that node's executor (not the engine's subject).
LSP_INFO_PREFIX: Final = "corridor.lsp.v1.info"

# Headers on every event message.
HDR_MSG_ID: Final = "Nats-Msg-Id"
HDR_STREAM_ID: Final = "Corridor-Stream-Id"
HDR_POSITION: Final = "Corridor-Position"
HDR_STREAM_VERSION: Final = "Corridor-Stream-Version"
HDR_EVENT_TYPE: Final = "Corridor-Event-Type"
HDR_CORRELATION_ID: Final = "Corridor-Correlation-Id"
# On work orders only: the relay may have published this order before (it was committed
# before the relay took the lead), so an executor must ask the engine before sending.
HDR_REPLAYED: Final = "Corridor-Replayed"
# On work orders re-issued from the log (ADR 0075): the relay's token for that round.
HDR_REISSUED: Final = "Corridor-Reissued"
HDR_ERROR_CODE: Final = "Corridor-Error-Code"
HDR_ERROR_FIELD: Final = "Corridor-Error-Field"
HDR_ERROR_MESSAGE: Final = "Corridor-Error-Message"
HDR_ORIGINAL_SUBJECT: Final = "Corridor-Original-Subject"


def dispatch_subject(region: str, node: str) -> str:
    """Where the work orders for one node go: each node's durable sees only its own."""
    return f"{DISPATCH_PREFIX}.{region}.{node}"


def intent_event_subject(owner: str, event_type: str) -> str:
    """Where an event of ``owner``'s intent goes: the caller's own subtree (ADR 0067)."""
    return f"{EVT_INTENT_PREFIX}.{owner}.{event_type}"


def owner_events(owner: str) -> str:
    """Every event of ``owner``'s intents: what that caller may subscribe and filter on."""
    return f"{EVT_INTENT_PREFIX}.{owner}.>"


def event_type_of(subject: str) -> str:
    """An event message's type: its subject's last token, in every version of the subject."""
    return subject.rsplit(".", 1)[-1]
