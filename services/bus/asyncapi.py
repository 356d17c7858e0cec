"""Generate ``docs/api/asyncapi.json``: the NATS interface as an AsyncAPI 3.0 document.

Channels, messages and headers come from the same places the code uses: the subjects and verb
tables in ``services/bus/subjects.py`` and the msgspec Structs in ``schemas/``. Run
``make schemas`` after changing either; a test fails while the file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from schemas.agent_key_messages import (
    AGENT_KEY_COMMAND_TYPES,
    AGENT_KEY_EVENT_TYPES,
    AgentKeyCommandAccepted,
    AgentKeysView,
    ListAgentKeys,
)
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
from schemas.generate import _normalised
from schemas.lsp_messages import LSP_ORDER_COMMAND_TYPES, GetLspInfo, LspInfoView
from schemas.policy_messages import (
    POLICY_COMMAND_TYPES,
    POLICY_EVENT_TYPES,
    GetPolicy,
    ListCorridors,
)
from schemas.rebalance_messages import REBALANCE_COMMAND_TYPES, REBALANCE_EVENT_TYPES
from schemas.receive_messages import RECEIVE_COMMAND_TYPES, RECEIVE_EVENT_TYPES
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
from services.bus import subjects

OUT: Final = Path(__file__).resolve().parents[2] / "docs" / "api" / "asyncapi.json"
_REF: Final = "#/components/schemas/{name}"

_PRINCIPAL = {
    "description": "The sender's id: the last token its NATS credential may publish "
    "under (ADR 0060). A payload naming anyone else is refused (identity_mismatch)."
}
_READER = {
    "description": "The reader's role and id (`<role>.<id>`): the engine answers only "
    "what that reader may see (ADR 0061)."
}

# The headers of every event and work order message the relay publishes.
EVENT_HEADERS: Final = {
    "type": "object",
    "required": [
        subjects.HDR_MSG_ID,
        subjects.HDR_STREAM_ID,
        subjects.HDR_POSITION,
        subjects.HDR_STREAM_VERSION,
        subjects.HDR_EVENT_TYPE,
    ],
    "properties": {
        subjects.HDR_MSG_ID: {
            "type": "string",
            "description": "The event id: JetStream drops a duplicate publish by it.",
        },
        subjects.HDR_STREAM_ID: {"type": "string", "description": "The intent (or stream) id."},
        subjects.HDR_POSITION: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "The event's position in the log: gapless, in commit order. "
            "Dedupe by it.",
        },
        subjects.HDR_STREAM_VERSION: {"type": "string", "pattern": "^[0-9]+$"},
        subjects.HDR_EVENT_TYPE: {"type": "string"},
        subjects.HDR_CORRELATION_ID: {"type": "string"},
        subjects.HDR_REPLAYED: {
            "type": "string",
            "enum": ["true"],
            "description": "A work order published again after a relay outage.",
        },
        "traceparent": {"type": "string", "description": "W3C trace context (ADR 0154)."},
    },
}
COMMAND_HEADERS: Final = {
    "type": "object",
    "properties": {
        subjects.HDR_MSG_ID: {
            "type": "string",
            "description": "On CORRIDOR_CMD: JetStream drops a second publish with the same id.",
        },
        subjects.HDR_CORRELATION_ID: {"type": "string", "maxLength": 128},
        "traceparent": {"type": "string", "description": "W3C trace context (ADR 0154)."},
    },
}


def _schemas(classes: list[type[Any]]) -> dict[str, Any]:
    _refs, components = msgspec.json.schema_components(classes, ref_template=_REF)
    return dict(_normalised(components))


def _message(
    name: str, payload: str, *, headers: dict[str, Any] | None = None, summary: str = ""
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "contentType": "application/json",
        "payload": {"$ref": _REF.format(name=payload)},
    }
    if headers is not None:
        message["headers"] = headers
    if summary:
        message["summary"] = summary
    return message


def _named(types: tuple[type[Any], ...], name: str) -> type[Any]:
    return next(t for t in types if t.__name__ == name)


def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    reply_sets: dict[str, list[str]] = {}

    def reply_channel(replies: tuple[type[Any], ...]) -> str:
        key = "reply" + "Or".join(r.__name__ for r in replies)
        if key not in channels:
            channels[key] = {
                "address": None,
                "description": "The requester's inbox (NATS request/reply).",
                "messages": {
                    r.__name__: {"$ref": f"#/components/messages/{r.__name__}"} for r in replies
                },
            }
            for reply in replies:
                messages.setdefault(reply.__name__, _message(reply.__name__, reply.__name__))
            reply_sets[key] = [r.__name__ for r in replies]
        return key

    def request(
        channel_id: str,
        address: str,
        params: dict[str, Any],
        request_cls: type[Any],
        replies: tuple[type[Any], ...],
        summary: str,
    ) -> None:
        name = request_cls.__name__
        messages.setdefault(name, _message(name, name, headers=COMMAND_HEADERS))
        channels[channel_id] = {
            "address": address,
            "parameters": params,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        inbox = reply_channel(replies)
        operations[f"send_{channel_id}"] = {
            "action": "send",
            "summary": summary,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"}],
            "reply": {
                "channel": {"$ref": f"#/channels/{inbox}"},
                "messages": [
                    {"$ref": f"#/channels/{inbox}/messages/{r}"} for r in reply_sets[inbox]
                ],
            },
        }

    intent_replies = (CommandAccepted, CommandRejected)
    command_by_name = {c.__name__: c for c in COMMAND_TYPES}
    for verb, type_name in subjects.VERBS.items():
        command = command_by_name[type_name]
        request(
            f"intents_{verb}",
            f"{subjects.API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            command,
            intent_replies,
            f"{type_name}, answered once committed",
        )
        # The same command, durable, through the CORRIDOR_CMD stream: no reply.
        channels[f"commands_{verb}"] = {
            "address": f"{subjects.CMD_PREFIX}.{verb}.{{principal}}",
            "parameters": {"principal": _PRINCIPAL},
            "description": f"{type_name} through the {subjects.CMD_STREAM} JetStream stream; "
            "a refusal goes to CORRIDOR_DLQ with Corridor-Error-* headers.",
            "messages": {type_name: {"$ref": f"#/components/messages/{type_name}"}},
        }
        operations[f"publish_commands_{verb}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/commands_{verb}"},
            "messages": [{"$ref": f"#/channels/commands_{verb}/messages/{type_name}"}],
        }
    # Receive intents (ADR 0220): request/reply only.
    for verb, type_name in subjects.RECEIVE_VERBS.items():
        request(
            f"intents_{verb}",
            f"{subjects.API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            _named(RECEIVE_COMMAND_TYPES, type_name),
            intent_replies,
            f"{type_name}, answered once committed",
        )
    # Rebalances (ADR 0244): a service caller's requests; executors report on ``outcome``.
    for verb, type_name in subjects.REBALANCE_VERBS.items():
        request(
            f"intents_{verb}",
            f"{subjects.API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            _named(REBALANCE_COMMAND_TYPES, type_name),
            intent_replies,
            f"{type_name}, answered once committed",
        )
    # LSP orders (ADR 0252): an operator's or service caller's order, its executor's reports.
    for verb, type_name in subjects.LSP_VERBS.items():
        request(
            f"lsp_{verb}",
            f"{subjects.LSP_API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            _named(LSP_ORDER_COMMAND_TYPES, type_name),
            intent_replies,
            f"{type_name}, answered once committed",
        )
    request(
        "lsp_info",
        f"{subjects.LSP_INFO_PREFIX}.{{node}}",
        {"node": {"description": "our node, whose executor asks the LSP"}},
        GetLspInfo,
        (LspInfoView, CommandRejected),
        "the LSP's LSPS1 options (lsps1.get_info), answered by the node's executor",
    )
    request(
        "lsp_get",
        f"{subjects.LSP_GET}.{{role}}.{{id}}",
        {"role": _READER, "id": _READER},
        GetPaymentIntent,
        (PaymentIntentView, CommandRejected),
        "an LSP order's state and events",
    )
    request(
        "intents_get",
        f"{subjects.API_GET}.{{role}}.{{id}}",
        {"role": _READER, "id": _READER},
        GetPaymentIntent,
        (PaymentIntentView, CommandRejected),
        "an intent's state and events",
    )
    request(
        "intents_status",
        f"{subjects.API_STATUS}.{{role}}.{{id}}",
        {"role": _READER, "id": _READER},
        GetPaymentIntentStatus,
        (PaymentIntentStatus, CommandRejected),
        "an intent's state, cheaply",
    )
    for verb, type_name in subjects.POLICY_VERBS.items():
        cls = _named(POLICY_COMMAND_TYPES, type_name)
        request(
            f"policy_{verb}",
            f"{subjects.POLICY_API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            cls,
            (PolicyCommandAccepted, CommandRejected),
            f"{type_name} (two-person rule)",
        )
    request(
        "policy_show",
        subjects.POLICY_SHOW,
        {},
        GetPolicy,
        (PolicyView, CommandRejected),
        "the policy in force",
    )
    request(
        "policy_corridors",
        subjects.POLICY_CORRIDORS,
        {},
        ListCorridors,
        (CorridorsView, CommandRejected),
        "the corridors routed",
    )
    for verb, type_name in subjects.AGENT_KEY_VERBS.items():
        cls = _named(AGENT_KEY_COMMAND_TYPES, type_name)
        request(
            f"agents_{verb}",
            f"{subjects.AGENTS_API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            cls,
            (AgentKeyCommandAccepted, CommandRejected),
            f"{type_name}",
        )
    request(
        "agents_list",
        f"{subjects.AGENTS_LIST}.{{role}}.{{id}}",
        {"role": _READER, "id": _READER},
        ListAgentKeys,
        (AgentKeysView, CommandRejected),
        "agent keys the reader may see",
    )
    for verb, type_name in subjects.RECON_VERBS.items():
        cls = _named(RECONCILIATION_COMMAND_TYPES, type_name)
        request(
            f"recon_{verb}",
            f"{subjects.RECON_API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            cls,
            (ReconciliationCommandAccepted, CommandRejected),
            type_name,
        )
    # A caller's webhook endpoints (ADR 0175).
    for verb, cls in (("register", RegisterWebhookEndpoint), ("remove", RemoveWebhookEndpoint)):
        request(
            f"webhooks_{verb}",
            f"{subjects.WEBHOOKS_API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            cls,
            (WebhookCommandAccepted, CommandRejected),
            cls.__name__,
        )
    request(
        "webhooks_list",
        f"{subjects.WEBHOOKS_LIST}.{{principal}}",
        {"principal": _PRINCIPAL},
        ListWebhookEndpoints,
        (WebhookEndpointsView, CommandRejected),
        "the caller's webhook endpoints",
    )
    dlq_requests: tuple[tuple[str, type[Any]], ...] = (
        ("list", ListDeadLetters),
        ("replay", ReplayDeadLetters),
        ("drop", DropDeadLetters),
    )
    for verb, cls in dlq_requests:
        reply = DeadLetterList if verb == "list" else DeadLetterActionDone
        request(
            f"dlq_{verb}",
            f"{subjects.DLQ_API_PREFIX}.{verb}.{{principal}}",
            {"principal": _PRINCIPAL},
            cls,
            (reply, CommandRejected),
            cls.__name__,
        )

    # Events: every committed event, as RecordedEvent, from the CORRIDOR_EVT stream.
    event_groups = (
        (
            "intent_events",
            f"{subjects.EVT_INTENT_PREFIX}.{{owner}}.{{eventType}}",
            {**EVENT_TYPES, **RECEIVE_EVENT_TYPES, **REBALANCE_EVENT_TYPES},
            "An intent's events, under the subtree of the caller who submitted it (ADR 0067).",
        ),
        (
            "policy_events",
            f"{subjects.EVT_POLICY_PREFIX}.{{eventType}}",
            POLICY_EVENT_TYPES,
            "Policy proposals and activations.",
        ),
        (
            "unowned_events",
            f"{subjects.EVT_UNOWNED_PREFIX}.{{eventType}}",
            {**AGENT_KEY_EVENT_TYPES, **DEAD_LETTER_EVENT_TYPES, **RECONCILIATION_EVENT_TYPES},
            "Agent keys, dead-letter actions and reconciliation: no caller's subtree.",
        ),
        (
            "webhook_events",
            f"{subjects.EVT_PREFIX}.webhook.{{eventType}}",
            WEBHOOK_EVENT_TYPES,
            "Webhook endpoints registered, disabled, and deliveries that failed (ADR 0175).",
        ),
    )
    for channel_id, address, types, description in event_groups:
        channel_messages = {}
        for event_name in types:
            message_name = f"{event_name}Event"
            messages[message_name] = {
                "name": message_name,
                "contentType": "application/json",
                "headers": EVENT_HEADERS,
                "payload": {
                    "allOf": [
                        {"$ref": _REF.format(name=RecordedEvent.__name__)},
                        {
                            "properties": {
                                "type": {"const": event_name},
                                "data": {"$ref": _REF.format(name=event_name)},
                            }
                        },
                    ]
                },
            }
            channel_messages[message_name] = {"$ref": f"#/components/messages/{message_name}"}
        params = {"eventType": {"description": "The event's type name."}}
        if "{owner}" in address:
            params["owner"] = {"description": "The id of the caller who submitted the intent."}
        channels[channel_id] = {
            "address": address,
            "parameters": params,
            "description": description,
            "messages": channel_messages,
        }
        operations[f"receive_{channel_id}"] = {
            "action": "receive",
            "summary": f"Consume from {subjects.EVT_STREAM} (a durable consumer; ack each; "
            "dedupe by Corridor-Position).",
            "channel": {"$ref": f"#/channels/{channel_id}"},
        }

    classes: list[type[Any]] = [
        *COMMAND_TYPES,
        GetPaymentIntent,
        GetPaymentIntentStatus,
        *POLICY_COMMAND_TYPES,
        GetPolicy,
        ListCorridors,
        *AGENT_KEY_COMMAND_TYPES,
        ListAgentKeys,
        *RECONCILIATION_COMMAND_TYPES,
        RegisterWebhookEndpoint,
        RemoveWebhookEndpoint,
        ListWebhookEndpoints,
        *RECEIVE_COMMAND_TYPES,
        *REBALANCE_COMMAND_TYPES,
        *LSP_ORDER_COMMAND_TYPES,  # ADR 0252
        GetLspInfo,
        LspInfoView,
        ListDeadLetters,
        ReplayDeadLetters,
        DropDeadLetters,
        CommandAccepted,
        CommandRejected,
        PaymentIntentView,
        PaymentIntentStatus,
        PolicyCommandAccepted,
        PolicyView,
        CorridorsView,
        AgentKeyCommandAccepted,
        AgentKeysView,
        ReconciliationCommandAccepted,
        WebhookCommandAccepted,
        WebhookEndpointsView,
        DeadLetterList,
        DeadLetterActionDone,
        RecordedEvent,
        *EVENT_TYPES.values(),
        *POLICY_EVENT_TYPES.values(),
        *AGENT_KEY_EVENT_TYPES.values(),
        *DEAD_LETTER_EVENT_TYPES.values(),
        *RECONCILIATION_EVENT_TYPES.values(),
        *WEBHOOK_EVENT_TYPES.values(),
        *RECEIVE_EVENT_TYPES.values(),
        *REBALANCE_EVENT_TYPES.values(),
    ]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Corridor NATS interface",
            "version": "1",
            "description": "Commands (request/reply and the CORRIDOR_CMD stream), queries, "
            "and the event stream CORRIDOR_EVT. Generated by `python -m services.bus.asyncapi` "
            "from the code's subjects and msgspec types; each message's JSON Schema is also in "
            "schemas/json/.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "`corridor up` (its URL is in endpoints.json); nkey users.",
            },
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"schemas": _schemas(classes), "messages": dict(sorted(messages.items()))},
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
