"""Generate ``schemas/json/*.json`` (JSON Schema 2020-12) from the msgspec Structs.

Run ``make schemas`` after changing a message; a test fails while the files are stale.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from schemas.agent_key_messages import (
    AGENT_KEY_COMMAND_TYPES,
    AGENT_KEY_EVENT_TYPES,
    AGENT_KEY_QUERY_TYPES,
    AgentKeyCommandAccepted,
    AgentKeysView,
)
from schemas.channel_messages import CHANNEL_OP_COMMAND_TYPES, CHANNEL_OP_EVENT_TYPES
from schemas.commands import COMMAND_TYPES, GetPaymentIntent, GetPaymentIntentStatus
from schemas.dead_letters import (
    DEAD_LETTER_EVENT_TYPES,
    DeadLetterActionDone,
    DeadLetterList,
    DropDeadLetters,
    ListDeadLetters,
    ReplayDeadLetters,
)
from schemas.events import EVENT_TYPES
from schemas.jit_messages import JIT_COMMAND_TYPES, JIT_EVENT_TYPES
from schemas.lsp_messages import LSP_ORDER_COMMAND_TYPES, LSP_ORDER_EVENT_TYPES
from schemas.payee_messages import PAYEE_COMMAND_TYPES, PAYEE_EVENT_TYPES
from schemas.pilot import PilotReport, PilotThresholds
from schemas.policy_document import PolicyDocument
from schemas.policy_messages import POLICY_COMMAND_TYPES, POLICY_EVENT_TYPES, POLICY_QUERY_TYPES
from schemas.rebalance_messages import REBALANCE_COMMAND_TYPES, REBALANCE_EVENT_TYPES
from schemas.receive_messages import (
    RECEIVE_COMMAND_TYPES,
    RECEIVE_EVENT_TYPES,
    ExpiredInvoices,
    GetExpiredInvoices,
    GetInvoiceCursor,
    InvoiceCursor,
)
from schemas.reconciliation_messages import (
    RECONCILIATION_COMMAND_TYPES,
    RECONCILIATION_EVENT_TYPES,
    ReconciliationCommandAccepted,
)
from schemas.records import RecordedEvent
from schemas.replies import (
    CommandAccepted,
    CommandRejected,
    CorridorsView,
    PaymentIntentStatus,
    PaymentIntentView,
    PolicyCommandAccepted,
    PolicyView,
)
from schemas.webhook_messages import (
    WEBHOOK_EVENT_TYPES,
    ListWebhookEndpoints,
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
    WebhookCommandAccepted,
    WebhookEndpointsView,
)

JSON_DIR = Path(__file__).parent / "json"
_ENVELOPE = ("type", "version")


def normalise_text(text: str) -> str:
    """One canonical form for a docstring-derived description: paragraphs kept, each folded
    onto one line. msgspec's own docstring handling changed between releases (0.23 keeps the
    indentation 0.18 stripped), and the generated files must not follow a library's taste."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def _normalised(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: normalise_text(value)
            if key in ("description", "title") and isinstance(value, str)
            else _normalised(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_normalised(item) for item in node]
    return node


def _document(cls: type[Any], kind: str, version: int) -> dict[str, Any]:
    (_ref,), raw_components = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
    components = _normalised(raw_components)
    name = cls.__name__
    root = dict(components.pop(name))
    if kind in ("command", "reply"):
        # ``version`` has a default for Python callers, but the wire requires both fields.
        root["required"] = sorted(set(root.get("required", [])) | set(_ENVELOPE))
    doc: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://corridor.dev/schemas/{kind}/{name}.v{version}.json",
        "title": f"{name} v{version}",
        "x-corridor-kind": kind,
        **root,
    }
    if components:
        doc["$defs"] = components
    return doc


def documents() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for cls in (
        *COMMAND_TYPES,
        GetPaymentIntent,
        GetPaymentIntentStatus,
        *POLICY_QUERY_TYPES,
        *AGENT_KEY_COMMAND_TYPES,
        *AGENT_KEY_QUERY_TYPES,
    ):
        out[f"commands/{cls.__name__}.v1.json"] = _document(cls, "command", 1)
    for reply_cls in (
        CommandAccepted,
        CommandRejected,
        PaymentIntentView,
        PaymentIntentStatus,
        PolicyCommandAccepted,
        PolicyView,
        CorridorsView,
        AgentKeyCommandAccepted,
        AgentKeysView,
    ):
        out[f"replies/{reply_cls.__name__}.v1.json"] = _document(reply_cls, "reply", 1)
    for name, event_cls in EVENT_TYPES.items():
        out[f"events/{name}.v{event_cls.VERSION}.json"] = _document(
            event_cls, "event", event_cls.VERSION
        )
    for policy_cmd in POLICY_COMMAND_TYPES:
        out[f"commands/{policy_cmd.__name__}.v1.json"] = _document(policy_cmd, "command", 1)
    for name, policy_event in POLICY_EVENT_TYPES.items():
        out[f"events/{name}.v{policy_event.VERSION}.json"] = _document(
            policy_event, "event", policy_event.VERSION
        )
    # The dead-letter desk (ADR 0080): its requests, replies and audit events.
    for name, dlq_event in DEAD_LETTER_EVENT_TYPES.items():
        out[f"events/{name}.v{dlq_event.VERSION}.json"] = _document(
            dlq_event, "event", dlq_event.VERSION
        )
    for dlq_cls in (ListDeadLetters, ReplayDeadLetters, DropDeadLetters):
        out[f"commands/{dlq_cls.__name__}.v1.json"] = _document(dlq_cls, "command", 1)
    for dlq_reply in (DeadLetterList, DeadLetterActionDone):
        out[f"replies/{dlq_reply.__name__}.v1.json"] = _document(dlq_reply, "reply", 1)
    for name, key_event in AGENT_KEY_EVENT_TYPES.items():
        out[f"events/{name}.v{key_event.VERSION}.json"] = _document(
            key_event, "event", key_event.VERSION
        )
    # Reconciliation against the nodes' records (ADR 0151).
    for recon_cmd in RECONCILIATION_COMMAND_TYPES:
        out[f"commands/{recon_cmd.__name__}.v1.json"] = _document(recon_cmd, "command", 1)
    for name, recon_event in RECONCILIATION_EVENT_TYPES.items():
        out[f"events/{name}.v{recon_event.VERSION}.json"] = _document(
            recon_event, "event", recon_event.VERSION
        )
    out["replies/ReconciliationCommandAccepted.v1.json"] = _document(
        ReconciliationCommandAccepted, "reply", 1
    )
    # Webhook endpoints (ADR 0175): a caller's commands and query, the events, the replies.
    for hook_cls in (RegisterWebhookEndpoint, RemoveWebhookEndpoint, ListWebhookEndpoints):
        out[f"commands/{hook_cls.__name__}.v1.json"] = _document(hook_cls, "command", 1)
    for name, hook_event in WEBHOOK_EVENT_TYPES.items():
        out[f"events/{name}.v{hook_event.VERSION}.json"] = _document(
            hook_event, "event", hook_event.VERSION
        )
    for hook_reply in (WebhookCommandAccepted, WebhookEndpointsView):
        out[f"replies/{hook_reply.__name__}.v1.json"] = _document(hook_reply, "reply", 1)
    # The intent kinds after payments, each a list of commands and a table of events:
    # channel operations (ADR 0233), rebalances (ADR 0244), JIT sales (ADR 0261), LSP orders
    # (ADR 0251) and payees (ADR 0270; no personal data in either).
    for commands, events in (
        (CHANNEL_OP_COMMAND_TYPES, CHANNEL_OP_EVENT_TYPES),
        (REBALANCE_COMMAND_TYPES, REBALANCE_EVENT_TYPES),
        (JIT_COMMAND_TYPES, JIT_EVENT_TYPES),
        (LSP_ORDER_COMMAND_TYPES, LSP_ORDER_EVENT_TYPES),
        (PAYEE_COMMAND_TYPES, PAYEE_EVENT_TYPES),
    ):
        out |= _kind_documents(commands, events)
    # Receive intents (issue 18, ADR 0220).
    for rcv_cls in (*RECEIVE_COMMAND_TYPES, GetInvoiceCursor, GetExpiredInvoices):
        out[f"commands/{rcv_cls.__name__}.v1.json"] = _document(rcv_cls, "command", 1)
    for name, rcv_event in RECEIVE_EVENT_TYPES.items():
        out[f"events/{name}.v{rcv_event.VERSION}.json"] = _document(
            rcv_event, "event", rcv_event.VERSION
        )
    out["replies/InvoiceCursor.v1.json"] = _document(InvoiceCursor, "reply", 1)
    out["replies/ExpiredInvoices.v1.json"] = _document(ExpiredInvoices, "reply", 1)
    out["policy/PolicyDocument.v1.json"] = _document(PolicyDocument, "policy", 1)
    # `corridor pilot report --json` and the thresholds file it reads (ADR 0155, 0156).
    out["pilot/PilotReport.v1.json"] = _document(PilotReport, "report", 1)
    out["pilot/PilotThresholds.v1.json"] = _document(PilotThresholds, "config", 1)
    out["envelopes/RecordedEvent.v1.json"] = _document(RecordedEvent, "envelope", 1)
    return out


def _kind_documents(
    commands: Iterable[type[Any]], events: Mapping[str, type[Any]]
) -> dict[str, dict[str, Any]]:
    """One intent kind's documents: each command at version 1, each event at its VERSION."""
    out = {f"commands/{cmd.__name__}.v1.json": _document(cmd, "command", 1) for cmd in commands}
    for name, event in events.items():
        out[f"events/{name}.v{event.VERSION}.json"] = _document(event, "event", event.VERSION)
    return out


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main() -> int:
    wanted = documents()
    for rel, doc in wanted.items():
        path = JSON_DIR / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(doc))
    for path in JSON_DIR.rglob("*.json"):
        if str(path.relative_to(JSON_DIR)) not in wanted:
            path.unlink()
    print(f"wrote {len(wanted)} schemas to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
