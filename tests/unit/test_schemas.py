"""The JSON Schema files are generated from the Structs and must not be stale."""

from __future__ import annotations

import json

import msgspec
from jsonschema import Draft202012Validator

from schemas import codec
from schemas.generate import JSON_DIR, documents, render
from tests.factories import submit


def test_generated_json_schemas_are_up_to_date() -> None:
    wanted = documents()
    on_disk = {str(p.relative_to(JSON_DIR)) for p in JSON_DIR.rglob("*.json")}
    assert on_disk == set(wanted), "run `make schemas`"
    for rel, doc in wanted.items():
        assert (JSON_DIR / rel).read_text() == render(doc), f"{rel} is stale: run `make schemas`"


def test_schemas_are_valid_and_accept_what_the_codec_accepts() -> None:
    schema = json.loads((JSON_DIR / "commands/SubmitPaymentIntent.v1.json").read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    good = submit(metadata={"invoice_ref": "A-1"})
    assert not list(validator.iter_errors(good))
    codec.decode_command(json.dumps(good).encode())
    for bad in ({**good, "version": 2}, {**good, "amount_msat": 0}, {**good, "zz": 1},
                {k: v for k, v in good.items() if k != "version"}):  # fmt: skip
        assert list(validator.iter_errors(bad)), bad


def test_every_message_carries_type_and_version() -> None:
    for rel, doc in documents().items():
        if rel.startswith(("commands/", "replies/")):
            assert {"type", "version"} <= set(doc["required"]), rel


def test_encoded_command_round_trips() -> None:
    raw = json.dumps(submit()).encode()
    command = codec.decode_command(raw)
    defaults = {"metadata": {}, "deadline_s": None, "payment_request": None, "payee_id": None}
    assert json.loads(msgspec.json.encode(command)) == json.loads(raw) | defaults


def test_descriptions_do_not_depend_on_how_a_library_renders_docstrings() -> None:
    from schemas.generate import normalise_text

    indented = "First line\n    continues here.\n\n    Second   paragraph."
    flush = "First line\ncontinues here.\n\nSecond paragraph."
    assert normalise_text(indented) == normalise_text(flush)
    assert normalise_text(indented) == "First line continues here.\n\nSecond paragraph."
    assert normalise_text(normalise_text(indented)) == normalise_text(indented)
