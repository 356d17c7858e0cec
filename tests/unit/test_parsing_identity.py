"""From a subject and a payload to an authenticated envelope, and to a query's reader."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import errors
from services.bus import subjects
from services.domain.principal import Principal
from services.identity.lookup import IndexedRegistry
from services.identity.registry import Credential, Registry
from services.intake.identity import Authenticator
from services.intake.parsing import parse_command, query_of, query_reader
from tests.factories import submit

KEY = "U" + "C" * 55
AUTH = Authenticator(
    IndexedRegistry(
        Registry(
            credentials=(
                Credential(id="alice", role="caller", public_key=KEY, kind="service"),
                Credential(id="op-a", role="operator", public_key=KEY),
                Credential(
                    id="us-lnd", role="executor", public_key=KEY, region="us", node="us-lnd"
                ),
            )
        )
    )
)


def parse(subject: str, body: dict[str, Any], prefix: str = subjects.API_PREFIX) -> Any:
    return parse_command(
        subject, prefix, json.dumps(body).encode(), {subjects.HDR_MSG_ID: "m-1"},
        authenticator=AUTH,
        verbs=subjects.POLICY_VERBS if prefix == subjects.POLICY_API_PREFIX else subjects.VERBS,
    )  # fmt: skip


def code_of(subject: str, body: dict[str, Any], prefix: str = subjects.API_PREFIX) -> Any:
    with pytest.raises(errors.CorridorError) as exc:
        parse(subject, body, prefix)
    return exc.value.code, exc.value.field


OUTCOME = {
    "type": "RecordPaymentOutcome", "version": 1, "intent_id": "i", "attempt": 1,
    "outcome": "failed", "region": "us", "node": "us-lnd", "failure_reason": "no_route",
    "confirmed_not_paid": True,
}  # fmt: skip


def test_the_envelope_carries_the_subjects_identity() -> None:
    envelope = parse(f"{subjects.API_PREFIX}.submit.alice", submit())
    assert envelope.principal == Principal(role="caller", id="alice")
    assert envelope.causation_id == "m-1"
    on_stream = parse(f"{subjects.CMD_PREFIX}.outcome.us-lnd", OUTCOME, subjects.CMD_PREFIX)
    assert on_stream.principal.actor == "executor:us-lnd"
    approve = {"type": "ApprovePolicy", "version": 1, "policy_version": 2, "approver_id": "op-a"}
    policy = parse(f"{subjects.POLICY_API_PREFIX}.approve.op-a", approve,
                   subjects.POLICY_API_PREFIX)  # fmt: skip
    assert policy.principal == Principal(role="operator", id="op-a")


def test_identity_is_checked_after_the_subject_and_the_schema() -> None:
    assert code_of(f"{subjects.API_PREFIX}.submit.mallory", submit()) == (
        "identity_mismatch", "caller.id",
    )  # fmt: skip
    assert code_of(f"{subjects.API_PREFIX}.outcome.mallory", OUTCOME) == ("identity_mismatch",
                                                                        "node")  # fmt: skip
    assert code_of(f"{subjects.CMD_PREFIX}.outcome.mallory", OUTCOME, subjects.CMD_PREFIX) == (
        "identity_mismatch", "node",
    )  # fmt: skip
    assert code_of(f"{subjects.API_PREFIX}.submit.a.b", submit()) == ("bad_subject", "subject")
    assert code_of(f"{subjects.API_PREFIX}.cancel.alice", submit()) == ("subject_mismatch", "type")


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("corridor.api.v1.intents.get", ("get", ())),
        ("corridor.api.v1.intents.status", ("status", ())),
        ("corridor.api.v1.intents.get.caller.alice", ("get", ("caller", "alice"))),
        ("corridor.api.v1.intents.status.executor.us-lnd", ("status", ("executor", "us-lnd"))),
        ("corridor.api.v1.intents.get.alice", ("get", ("alice",))),
        ("corridor.api.v1.intents.submit.alice", None),
        ("corridor.api.v1.intents.statusx", None),
        ("corridor.api.v1.intents", None),
        ("corridor.api.v1.policy.show", None),
    ],
)
def test_query_subjects(subject: str, expected: Any) -> None:
    assert query_of(subject) == expected


def test_a_query_without_identity_tokens_is_the_engines_own() -> None:
    assert query_reader("get", (), AUTH) is None
    assert query_reader("get", ("caller", "alice"), AUTH) == Principal(role="caller", id="alice")
    for tokens in [("alice",), ("caller", "alice", "x")]:
        with pytest.raises(errors.CorridorError) as exc:
            query_reader("get", tokens, AUTH)
        assert (exc.value.code, exc.value.field) == ("bad_subject", "subject")
    with pytest.raises(errors.Forbidden):
        query_reader("get", ("executor", "us-lnd"), AUTH)
    assert query_reader("status", ("executor", "us-lnd"), AUTH) == Principal(
        role="executor", id="us-lnd"
    )
