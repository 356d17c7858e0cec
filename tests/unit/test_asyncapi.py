"""docs/api/asyncapi.json: the NATS interface as AsyncAPI 3.0, generated from the code's subjects
and msgspec types, never stale, and every reference in it resolves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from schemas.events import EVENT_TYPES
from services.bus import asyncapi, subjects

REGENERATE = "make schemas (python -m services.bus.asyncapi)"


def test_the_committed_document_is_not_stale() -> None:
    assert asyncapi.OUT.read_text() == asyncapi.render(), f"stale: run {REGENERATE}"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve at {part!r}"
        node = node[part]
    return node


def test_every_reference_resolves_and_every_command_and_event_is_there() -> None:
    doc = json.loads(asyncapi.OUT.read_text())
    assert doc["asyncapi"] == "3.0.0"
    refs = set(_refs(doc))
    assert refs
    for ref in refs:
        _resolve(doc, ref)
    for verb, type_name in subjects.VERBS.items():
        channel = doc["channels"][f"intents_{verb}"]
        assert channel["address"] == f"{subjects.API_PREFIX}.{verb}.{{principal}}"
        assert type_name in channel["messages"]
        assert set(doc["operations"][f"send_intents_{verb}"]["reply"]["channel"]) == {"$ref"}
    intent_events = doc["channels"]["intent_events"]["messages"]
    assert {f"{name}Event" for name in EVENT_TYPES} <= set(intent_events)
    headers = doc["components"]["messages"]["IntentSettledEvent"]["headers"]["properties"]
    assert subjects.HDR_POSITION in headers and "traceparent" in headers
    for channel in doc["channels"].values():  # AsyncAPI 3: a parameter per {name}
        address = channel["address"]
        if address is not None:
            named = {p.split("}")[0] for p in address.split("{")[1:]}
            assert named == set(channel.get("parameters", {})), address
