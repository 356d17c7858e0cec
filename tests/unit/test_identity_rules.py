"""Identity comes from the credential, never from the payload (ADR 0061): the intake's rules.

The subject's last token is the sender; the payload's identity field must name the same one;
a caller's kind and an executor's region come from the registry. Who may read an intent is a
pure rule over its state.
"""

from __future__ import annotations

import pytest

from schemas import commands as cmd
from schemas import errors
from schemas.common import Caller
from schemas.policy_messages import ApprovePolicy, PolicyCommand, ProposePolicy
from services.domain.intent import PaymentIntent
from services.domain.intent.access import may_read
from services.domain.principal import Principal, claimed_identity
from services.domain.routing import CorridorTable, RouteCandidate
from services.identity.lookup import IndexedRegistry
from services.identity.registry import Credential, Registry, Role
from services.intake.identity import Authenticator
from services.policy.loader import load_default_policy

KEY = "U" + "A" * 55


def credential(role: Role, ident: str, **extra: str | bool) -> Credential:
    return Credential(id=ident, role=role, public_key=KEY, **extra)  # type: ignore[arg-type]


REGISTRY = Registry(
    credentials=(
        credential("caller", "alice", kind="service"),
        credential("caller", "hal", kind="human"),
        credential("agent", "bot-7", kind="agent"),
        credential("operator", "op-a"),
        credential("operator", "op-b"),
        credential("operator", "gone", revoked=True),
        credential("auditor", "aud-1"),
        credential("executor", "us-lnd", region="us", node="us-lnd"),
        credential("executor", "eu-lnd", region="eu", node="eu-lnd"),
        credential("reconciler", "us-lnd", region="us", node="us-lnd"),
    )
)
TABLE = CorridorTable(
    corridors={
        "us-eu": (
            RouteCandidate(region="us", node="us-lnd"),
            RouteCandidate(region="eu", node="eu-lnd"),
        )
    }
)
VERIFIED = Authenticator(IndexedRegistry(REGISTRY), TABLE)
UNVERIFIED = Authenticator(None, TABLE)


def submit(caller_id: str = "alice", kind: str = "service") -> cmd.SubmitPaymentIntent:
    return cmd.SubmitPaymentIntent(
        idempotency_key="k", caller=Caller(id=caller_id, kind=kind),  # type: ignore[arg-type]
        corridor="us-eu", amount_msat=1_000, max_fee_msat=10, destination="02" + "11" * 32,
    )  # fmt: skip


def outcome(region: str = "us", node: str = "us-lnd") -> cmd.RecordPaymentOutcome:
    return cmd.RecordPaymentOutcome(
        intent_id="i", attempt=1, outcome="failed", region=region, node=node,
        failure_reason="no_route", confirmed_not_paid=True,
    )  # fmt: skip


def refused(
    auth: Authenticator, token: str, command: cmd.Command | PolicyCommand
) -> tuple[str, str | None]:
    with pytest.raises(errors.CorridorError) as exc:
        auth.command(token, command)
    return exc.value.code, exc.value.field


# -- commands ------------------------------------------------------------------------------


def test_a_caller_is_the_subjects_token_with_the_registrys_kind() -> None:
    assert VERIFIED.command("alice", submit()) == Principal(role="caller", id="alice")
    assert VERIFIED.command("bot-7", submit("bot-7", "agent")) == Principal(
        role="agent", id="bot-7"
    )
    assert VERIFIED.verified and not UNVERIFIED.verified


def test_a_payload_naming_another_caller_or_kind_is_an_identity_mismatch() -> None:
    assert refused(VERIFIED, "alice", submit("mallory")) == ("identity_mismatch", "caller.id")
    # The agent that declares itself a service to skip the review tier.
    assert refused(VERIFIED, "bot-7", submit("bot-7", "service")) == (
        "identity_mismatch", "caller.kind",
    )  # fmt: skip
    assert refused(VERIFIED, "hal", submit("hal", "agent")) == ("identity_mismatch", "caller.kind")
    cancel = cmd.CancelPaymentIntent(intent_id="i", caller=Caller(id="alice", kind="service"))
    assert refused(VERIFIED, "bob", cancel) == ("identity_mismatch", "caller.id")


def test_an_unknown_caller_is_forbidden_when_a_registry_is_configured() -> None:
    assert refused(VERIFIED, "mallory", submit("mallory")) == ("forbidden", "subject")
    # An operator's or an executor's credential does not make its holder a caller.
    assert refused(VERIFIED, "op-a", submit("op-a")) == ("forbidden", "subject")


def test_without_a_registry_the_token_rules_hold_and_the_kind_is_the_payloads() -> None:
    assert UNVERIFIED.command("mallory", submit("mallory", "service")) == Principal(
        role="caller", id="mallory"
    )
    assert refused(UNVERIFIED, "alice", submit("mallory")) == ("identity_mismatch", "caller.id")


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (cmd.ApprovePaymentIntent(intent_id="i", operator_id="op-b"), "operator_id"),
        (cmd.RejectPaymentIntent(intent_id="i", operator_id="op-b", reason="no"), "operator_id"),
        (cmd.AcknowledgeAnomaly(intent_id="i", operator_id="op-b", reason="ok"), "operator_id"),
        (ApprovePolicy(policy_version=2, approver_id="op-b"), "approver_id"),
        (
            ProposePolicy(policy_version=2, document=load_default_policy(), proposer_id="op-b"),
            "proposer_id",
        ),
    ],
)
def test_an_operator_is_the_subjects_token(
    command: cmd.Command | PolicyCommand, field: str
) -> None:
    assert VERIFIED.command("op-b", command) == Principal(role="operator", id="op-b")
    assert refused(VERIFIED, "op-a", command) == ("identity_mismatch", field)
    assert refused(UNVERIFIED, "op-a", command) == ("identity_mismatch", field)


def test_only_a_live_operator_credential_approves() -> None:
    by_agent = cmd.ApprovePaymentIntent(intent_id="i", operator_id="bot-7")
    assert refused(VERIFIED, "bot-7", by_agent) == ("forbidden", "subject")
    by_revoked = ApprovePolicy(policy_version=2, approver_id="gone")
    assert refused(VERIFIED, "gone", by_revoked) == ("forbidden", "subject")
    assert UNVERIFIED.command("bot-7", by_agent) == Principal(role="operator", id="bot-7")


def test_an_outcome_comes_from_the_executor_of_the_node_the_token_names() -> None:
    assert VERIFIED.command("us-lnd", outcome()) == Principal(role="executor", id="us-lnd")
    # Mallory's forgery: a token that is no executor, a payload that names us-lnd.
    assert refused(VERIFIED, "mallory", outcome()) == ("identity_mismatch", "node")
    assert refused(VERIFIED, "mallory", outcome("us", "mallory")) == ("forbidden", "subject")
    # Another executor speaking for us-lnd, or us-lnd claiming another region.
    assert refused(VERIFIED, "eu-lnd", outcome()) == ("identity_mismatch", "node")
    assert refused(VERIFIED, "us-lnd", outcome("eu", "us-lnd")) == ("identity_mismatch", "region")


def test_a_reconciliation_report_comes_from_the_reconciler_of_its_node() -> None:
    from schemas.reconciliation_messages import ClearNodeBreaker, ReportReconciliation

    def report(region: str = "us", node: str = "us-lnd") -> ReportReconciliation:
        return ReportReconciliation(node=node, region=region, found=(), consistent=())

    assert VERIFIED.command("us-lnd", report()) == Principal(role="reconciler", id="us-lnd")
    # eu-lnd's executor is no reconciler; us-lnd's reconciler cannot claim another region.
    assert refused(VERIFIED, "eu-lnd", report("eu", "eu-lnd")) == ("forbidden", "subject")
    assert refused(VERIFIED, "eu-lnd", report()) == ("identity_mismatch", "node")
    assert refused(VERIFIED, "us-lnd", report("eu")) == ("identity_mismatch", "region")
    clear = ClearNodeBreaker(node="us-lnd", operator_id="op-a", reason="checked")
    assert VERIFIED.command("op-a", clear) == Principal(role="operator", id="op-a")
    not_an_operator = ClearNodeBreaker(node="us-lnd", operator_id="us-lnd", reason="x")
    assert refused(VERIFIED, "us-lnd", not_an_operator) == ("forbidden", "subject")


def test_without_a_registry_an_executors_region_is_the_corridor_tables() -> None:
    assert refused(UNVERIFIED, "us-lnd", outcome("eu", "us-lnd")) == (
        "identity_mismatch", "region",
    )  # fmt: skip
    assert refused(UNVERIFIED, "exec-us", outcome()) == ("identity_mismatch", "node")
    # A node the table does not know (removed while an attempt was on it) can still report.
    assert UNVERIFIED.command("old-lnd", outcome("us", "old-lnd")).actor == "executor:old-lnd"


def test_the_engines_own_commands_name_nobody() -> None:
    assert claimed_identity(cmd.ExpirePaymentIntent(intent_id="i")) is None


# -- queries -------------------------------------------------------------------------------


def test_a_reader_is_a_live_credential_of_the_role_its_subject_names() -> None:
    assert VERIFIED.reader("caller", "alice", history=True) == Principal(role="caller", id="alice")
    assert VERIFIED.reader("executor", "us-lnd", history=False).role == "executor"
    for role, ident, history, code in [
        ("caller", "mallory", True, "forbidden"),
        ("operator", "alice", True, "forbidden"),  # alice is a caller, not an operator
        ("operator", "gone", False, "forbidden"),
        ("executor", "us-lnd", True, "forbidden"),  # executors ask status only
        ("king", "alice", True, "bad_subject"),
        ("caller", "a.b", True, "bad_subject"),
    ]:
        with pytest.raises(errors.CorridorError) as exc:
            VERIFIED.reader(role, ident, history=history)
        assert (exc.value.code, exc.value.field) == (code, "subject"), (role, ident)
    assert UNVERIFIED.reader("caller", "mallory", history=True).actor == "caller:mallory"


def _intent(caller: str = "alice", tried: tuple[tuple[str, str], ...] = ()) -> PaymentIntent:
    return PaymentIntent(
        intent_id="i", status="dispatched", version=4,  # type: ignore[arg-type]
        caller=Caller(id=caller, kind="service"), idempotency_key="k", request_fingerprint="f",
        corridor="us-eu", amount_msat=1, max_fee_msat=1, payment_request=None,
        destination="02" + "11" * 32, payment_hash=None, invoice_has_amount=None,
        received_at_ms=1, deadline_at_ms=None, tried_nodes=tried,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("role", "ident", "status", "history"),
    [
        ("caller", "alice", True, True),
        ("caller", "bob", False, False),
        ("agent", "alice", True, True),  # the same id under another role is the same sender
        ("operator", "op-a", True, True),
        ("auditor", "aud-1", True, True),
        ("engine", "engine", True, True),
        ("executor", "us-lnd", True, False),  # an earlier attempt went there
        ("executor", "eu-lnd", True, False),  # the current attempt is there
        ("executor", "us-cln", False, False),
    ],
)
def test_who_may_read_an_intent(role: Role, ident: str, status: bool, history: bool) -> None:
    state = _intent(tried=(("us", "us-lnd"), ("eu", "eu-lnd")))
    reader = Principal(role=role, id=ident)
    assert may_read(reader, state, history=False) is status
    assert may_read(reader, state, history=True) is history


def test_an_lsp_order_is_an_operators_or_a_service_callers_and_a_report_its_executors() -> None:
    """ADR 0252: the token is the whole identity; an operator orders as a human, a service
    caller as a service; people and agents through a caller credential do not; only an
    executor reports."""
    from schemas import lsp_messages as lm

    order = lm.OrderLspChannel(
        idempotency_key="k", region="us", node="us-lnd", lsp_pubkey="02" + "11" * 32,
        lsp_balance_msat=1_000_000, max_fee_msat=1_000, corridor="us-eu",
    )  # fmt: skip
    report = lm.RecordLspOrderReport(lsp_order_id="lsp-x", stage="no_answer")
    assert VERIFIED.command("op-a", order) == Principal(role="operator", id="op-a")
    assert VERIFIED.command("alice", order) == Principal(role="caller", id="alice")
    for token in ("hal", "bot-7", "us-lnd", "nobody"):
        with pytest.raises(errors.Forbidden):
            VERIFIED.command(token, order)
    assert VERIFIED.command("us-lnd", report) == Principal(role="executor", id="us-lnd")
    for token in ("op-a", "alice"):
        with pytest.raises(errors.Forbidden):
            VERIFIED.command(token, report)
    assert UNVERIFIED.command("alice", order) == Principal(role="caller", id="alice")
