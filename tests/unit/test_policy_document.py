"""Policy documents: the default, invalid documents with clear field errors, the CLI verbs."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import msgspec
import pytest

from services.policy.cli import register
from services.policy.loader import (
    DEFAULT_POLICY_PATH,
    PolicyDocumentInvalid,
    convert_policy,
    load_default_policy,
    parse_policy,
)

DEFAULT_YAML = DEFAULT_POLICY_PATH.read_text()


def test_the_default_document_holds_the_documented_limits() -> None:
    doc = load_default_policy()
    assert doc.version == 1
    assert sorted(doc.corridors) == ["eu-asia", "us-asia", "us-eu"]
    levels = doc.autonomy.levels
    assert levels[doc.autonomy.kinds.human].auto_max_msat == 10_000_000
    assert levels[doc.autonomy.kinds.service].auto_max_msat == 10_000_000
    agent = levels[doc.autonomy.kinds.agent]
    assert (agent.auto_max_msat, agent.review_max_msat) == (1_000_000, 10_000_000)
    assert doc.approval_window_s > 0 and doc.spend.kinds.agent


def test_json_and_yaml_give_the_same_document() -> None:
    doc = load_default_policy()
    assert parse_policy(msgspec.json.encode(doc), fmt="json") == doc


def _invalid(yaml_text: str) -> PolicyDocumentInvalid:
    with pytest.raises(PolicyDocumentInvalid) as refused:
        parse_policy(yaml_text, fmt="yaml")
    assert refused.value.code == "invalid_policy_document"
    return refused.value


@pytest.mark.parametrize(
    ("old", "new", "field", "says"),
    [
        ("amount_msat_max: 1_000_000_000}\n  eu-asia", 'amount_msat_max: "lots"}\n  eu-asia',
         "corridors.us-eu.amount_msat_max", "Expected `int`, got `str`"),
        ("us-asia:", "us_asia:", "corridors.us_asia", "matching regex"),
        ("cap_ppm: 10_000", "cap_ppn: 10_000", "fees.cap_ppn", "unknown field"),
        ("  cap_ppm: 10_000\n", "", "fees.cap_ppm", "required field is missing"),
        ("cap_ppm: 10_000", "cap_ppm: 2_000_000", "fees.cap_ppm", "<= 1000000"),
        ("version: 1", "version: 0", "version", ">= 1"),
        ("agent: supervised", "agent: superviced", "autonomy", "unknown level 'superviced'"),
        ("{auto_max_msat: 1_000_000, review_max_msat: 10_000_000}",
         "{auto_max_msat: 1_000_000, review_max_msat: 10}",
         "autonomy.levels.supervised", "must be at least auto_max_msat"),
        ("floor_msat: 10_000", "floor_msat: 20_000_000", "fees", "floor_msat"),
        ("jurisdictions: []", "jurisdictions: [KP, NO]", "deny.jurisdictions[1]",
         "quote the value"),
        ("destinations: []", "destinations: [not-a-key]", "deny.destinations[0]", "regex"),
        ("on_exceed: approval", "on_exceed: maybe", "spend.on_exceed", "Invalid enum value"),
        ("- {window_s: 86_400, limit_msat: 100_000_000}",
         "- {window_s: 3_600, limit_msat: 100_000_000}", "spend.kinds", "duplicate agent window_s"),
        ("approval_window_s: 86_400", "approval_window_s: 86_400.5", "approval_window_s",
         "got `float`"),
    ],
)  # fmt: skip
def test_invalid_documents_name_the_field(old: str, new: str, field: str, says: str) -> None:
    assert old in DEFAULT_YAML
    error = _invalid(DEFAULT_YAML.replace(old, new, 1))
    assert error.field == field
    assert error.message.startswith(f"{field}: ")
    assert says in error.message


def test_duplicate_yaml_keys_are_refused() -> None:
    error = _invalid(DEFAULT_YAML.replace("us-asia:", "us-eu:"))
    assert "duplicate key 'us-eu'" in error.message and "line" in error.message


def test_not_a_document_at_all() -> None:
    assert _invalid("[]").field == "(document)"
    assert "not valid YAML" in _invalid("version: [").message
    with pytest.raises(PolicyDocumentInvalid, match="not valid JSON"):
        parse_policy("{", fmt="json")


def test_strict_types_refuse_strings_for_numbers_in_json() -> None:
    raw = json.loads(msgspec.json.encode(load_default_policy()))
    raw["payment_max_msat"] = "1000"
    with pytest.raises(PolicyDocumentInvalid) as refused:
        convert_policy(raw)
    assert refused.value.field == "payment_max_msat"


def _cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out = io.StringIO()
    code = args.handler(args, out=out)
    return code, out.getvalue()


def test_cli_check(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(DEFAULT_YAML)
    assert _cli("policy", "check", str(good)) == (0, f"{good}: ok, policy version 1\n")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 2}')
    code, out = _cli("policy", "check", str(bad))
    assert code == 1 and "invalid: approval_window_s: required field is missing" in out
    code, out = _cli("policy", "check", str(tmp_path / "missing.yaml"))
    assert code == 1 and "No such file" in out
