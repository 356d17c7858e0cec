"""Validate JSON against Core Lightning's method schemas (shared/conformance/cln/schemas).

CLN's schemas use custom ``type`` names (msat, hash, pubkey...); they are mapped to standard
JSON types as described in shared/conformance/README.md, touching only the ``type`` keyword and
never a property that happens to be called ``type``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

SCHEMAS_DIR = Path(__file__).parents[2] / ".." / "shared" / "conformance" / "cln" / "schemas"

CLN_TYPES: dict[str, str | list[str]] = {
    "hex": "string", "hash": "string", "secret": "string", "pubkey": "string", "txid": "string",
    "signature": "string", "bip340sig": "string", "short_channel_id": "string",
    "short_channel_id_dir": "string", "outpoint": "string", "currency": "string",
    "u64": "integer", "u32": "integer", "u16": "integer", "u8": "integer",
    "msat": "integer", "sat": "integer", "sat_or_all": ["integer", "string"],
    "msat_or_all": ["integer", "string"], "msat_or_any": ["integer", "string"],
    "feerate": ["integer", "string"], "outputdesc": "object",
}  # fmt: skip


def to_standard(schema: Any) -> Any:
    if isinstance(schema, list):
        return [to_standard(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: to_standard(sub) for name, sub in value.items()}
        elif key == "type" and isinstance(value, str | list):
            types: list[str] = []
            for name in value if isinstance(value, list) else [value]:
                mapped = CLN_TYPES.get(name, name)
                types += mapped if isinstance(mapped, list) else [mapped]
            types = list(dict.fromkeys(types))
            out[key] = types[0] if len(types) == 1 else types
        else:
            out[key] = to_standard(value)
    return out


def schemas_available() -> bool:
    return SCHEMAS_DIR.is_dir()


DATASTORE_MODES = (
    "must-create", "must-replace", "create-or-replace", "must-append", "create-or-append",
)  # fmt: skip
_DATASTORE_KEY: dict[str, Any] = {
    "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]
}
_DATASTORE_ENTRY: dict[str, Any] = {
    "key": {"type": "array", "items": {"type": "string"}},
    "generation": {"type": "u64"},
    "hex": {"type": "hex"},
    "string": {"type": "string"},
}

# Schemas of methods the simulator serves that the conformance copies lack, transcribed from
# upstream doc/schemas/<method>.json (ElementsProject/lightning): help at 236af90f03f6,
# datastore at c573b6b646bc, listdatastore at 3e841b358e83 (descriptions left out; every
# ``type``, ``required``, ``enum`` and ``additionalProperties`` as upstream).
TRANSCRIBED: dict[str, dict[str, Any]] = {
    "datastore": {
        "request": {
            "required": ["key"],
            "additionalProperties": False,
            "properties": {
                "key": _DATASTORE_KEY,
                "string": {"type": "string"},
                "hex": {"type": "hex"},
                "mode": {
                    "type": "string",
                    "enum": list(DATASTORE_MODES),
                },
                "generation": {"type": "u64"},
            },
        },
        "response": {
            "required": ["key"],
            "additionalProperties": False,
            "properties": _DATASTORE_ENTRY,
        },
    },
    "listdatastore": {
        "request": {
            "required": [],
            "additionalProperties": False,
            "properties": {"key": _DATASTORE_KEY},
        },
        "response": {
            "required": ["datastore"],
            "additionalProperties": False,
            "properties": {
                "datastore": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["key"],
                        "properties": _DATASTORE_ENTRY,
                    },
                }
            },
        },
    },
    "help": {
        "request": {
            "required": [],
            "additionalProperties": False,
            "properties": {"command": {"type": "string"}},
        },
        "response": {
            "required": ["help", "format-hint"],
            "additionalProperties": False,
            "properties": {
                "help": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": True,
                        "required": ["command"],
                        "properties": {"command": {"type": "string"}},
                    },
                },
                "format-hint": {"type": "string", "enum": ["simple"]},
            },
        },
    },
}


@functools.cache
def method_schema(method: str) -> dict[str, Any]:
    path = SCHEMAS_DIR / f"{method}.json"
    if not path.exists() and method in TRANSCRIBED:
        return TRANSCRIBED[method]
    schema: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return schema


@functools.cache
def _validator(method: str, part: str) -> Draft7Validator:
    return Draft7Validator(to_standard(method_schema(method)[part]))


def schema_errors(method: str, document: Any, *, part: str = "response") -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(method, part).iter_errors(document)
    ]
