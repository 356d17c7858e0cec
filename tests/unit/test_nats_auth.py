"""The role table and the server's authorization block (services/identity/nats_auth.py), and the
seed files credentials are issued in. No server here: tests/integration/test_nats_auth.py checks
that nats-server enforces what is rendered."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from services.bus import subjects
from services.identity import nats_auth
from services.identity.nats_auth import (
    ENGINE_ONLY,
    ROLE_PERMISSIONS,
    authorization_conf,
    render_authorization,
    user_permissions,
)
from services.identity.registry import (
    ROLES,
    Credential,
    InvalidCredential,
    Registry,
    load_registry,
    registry_path,
)

KEYS = {name: nats_auth.public_key_of(nats_auth.new_seed()) for name in "abcdefghij"}


def _credential(role: str, ident: str, key: str, **extra: str) -> Credential:
    kind = {"caller": "service", "agent": "agent"}.get(role)
    return Credential(id=ident, role=role, public_key=key, kind=kind, **extra)  # type: ignore[arg-type]


EVERY_ROLE = Registry(
    credentials=(
        _credential("caller", "acme", KEYS["a"]),
        _credential("agent", "bot", KEYS["b"]),
        _credential("operator", "op-1", KEYS["c"]),
        _credential("executor", "us-lnd", KEYS["d"], region="us", node="us-lnd"),
        _credential("auditor", "aud-1", KEYS["e"]),
        _credential("engine", "engine-1", KEYS["f"]),
        _credential("reconciler", "us-lnd", KEYS["i"], region="us", node="us-lnd"),
        _credential("gateway", "http", KEYS["j"]),
    )
)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` one or more at the end."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


def allowed(user: dict, subject: str, *, what: str = "publish") -> bool:
    rules = user["permissions"][what]
    return any(matches(p, subject) for p in rules["allow"]) and not any(
        matches(p, subject) for p in rules.get("deny", [])
    )


def _users() -> dict[str, dict]:
    rendered = render_authorization(EVERY_ROLE)
    by_key = {u["nkey"]: u for u in rendered["users"]}
    return {c.role: by_key[c.public_key] for c in EVERY_ROLE.credentials}


def test_a_reconciler_reports_for_its_own_node_only() -> None:
    reconciler = _users()["reconciler"]
    assert allowed(reconciler, f"{subjects.RECON_API_PREFIX}.report.us-lnd")
    for subject in (
        f"{subjects.RECON_API_PREFIX}.report.eu-cln",
        f"{subjects.RECON_API_PREFIX}.clear.us-lnd",
        f"{subjects.RECON_API_PREFIX}.resolve.us-lnd",
        "corridor.api.v1.intents.outcome.us-lnd",
        "corridor.api.v1.intents.submit.us-lnd",
    ):
        assert not allowed(reconciler, subject), subject
    operator = _users()["operator"]
    assert allowed(operator, f"{subjects.RECON_API_PREFIX}.clear.op-1")
    assert not allowed(operator, f"{subjects.RECON_API_PREFIX}.report.us-lnd")


def test_the_gateway_forwards_api_requests_for_anyone_and_nothing_else() -> None:
    """ADR 0172: the HTTP API forwards as any caller or operator whose key it checked; it
    cannot report outcomes or reconciliations, change agent keys, write the command stream,
    read events, or read as the engine or an executor."""
    gateway = _users()["gateway"]
    for subject in (
        "corridor.api.v1.intents.submit.acme",
        "corridor.api.v1.intents.approve.op-1",
        "corridor.api.v1.intents.resolve.op-1",
        f"{subjects.POLICY_API_PREFIX}.approve.op-1",
        f"{subjects.DLQ_API_PREFIX}.replay.op-1",
        f"{subjects.RECON_API_PREFIX}.clear.op-1",
        f"{subjects.API_GET}.caller.acme",
        f"{subjects.API_GET}.auditor.aud-1",
        subjects.POLICY_SHOW,
    ):
        assert allowed(gateway, subject), subject
    for subject in (
        "corridor.api.v1.intents.outcome.us-lnd",
        f"{subjects.RECON_API_PREFIX}.report.us-lnd",
        f"{subjects.AGENTS_API_PREFIX}.approve.op-1",
        "corridor.cmd.v1.intents.submit.acme",
        subjects.API_GET,
        f"{subjects.API_GET}.engine.engine-1",
        f"{subjects.API_STATUS}.executor.us-lnd",
        "$JS.API.STREAM.INFO.CORRIDOR_EVT",
        "corridor.health.v1.us.us-lnd",
    ):
        assert not allowed(gateway, subject), subject
    assert not allowed(gateway, "corridor.evt.v2.intent.acme.IntentSettled", what="subscribe")


def test_every_role_has_a_row() -> None:
    assert set(ROLE_PERMISSIONS) == set(ROLES)


def test_a_caller_publishes_under_its_own_id_only() -> None:
    caller = _users()["caller"]
    for subject in (
        "corridor.api.v1.intents.submit.acme",
        "corridor.api.v1.intents.cancel.acme",
        "corridor.cmd.v1.intents.submit.acme",
        "corridor.cmd.v1.intents.cancel.acme",
        "corridor.api.v1.intents.get.caller.acme",
        "corridor.api.v1.intents.status.caller.acme",
        subjects.POLICY_SHOW,
        subjects.POLICY_CORRIDORS,
    ):
        assert allowed(caller, subject), subject
    for subject in (
        "corridor.api.v1.intents.submit.globex",
        "corridor.api.v1.intents.approve.acme",
        "corridor.api.v1.intents.outcome.us-lnd",
        "corridor.api.v1.policy.propose.acme",
        "corridor.health.v1.us.us-lnd",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.caller-acme",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.caller-acme.corridor.evt.>",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.caller-acme.corridor.evt.v2.intent.globex.>",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.caller-acme.corridor.evt.v2.intent.*.>",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.caller-globex.corridor.evt.v2.intent.acme.>",
        "$JS.API.DIRECT.GET.CORRIDOR_EVT",
        "$JS.API.STREAM.MSG.GET.CORRIDOR_EVT",
        "$JS.API.CONSUMER.MSG.NEXT.CORRIDOR_EVT.caller-globex",
        "$JS.API.STREAM.INFO.CORRIDOR_CMD",
        # The bare reads are the engine's (they read every intent); nor as another reader.
        subjects.API_GET,
        subjects.API_STATUS,
        "corridor.api.v1.intents.get.caller.globex",
        "corridor.api.v1.intents.get.operator.acme",
    ):
        assert not allowed(caller, subject), subject


def test_replies_go_to_each_user_s_own_inbox() -> None:
    users = _users()
    for role, user in users.items():
        if role == "engine":
            continue
        own = f"_INBOX.{user['nkey']}.abc.1"
        assert allowed(user, own, what="subscribe")
        others = [u["nkey"] for r, u in users.items() if r != role]
        for key in others:
            assert not allowed(user, f"_INBOX.{key}.abc.1", what="subscribe"), role
    assert nats_auth.inbox_prefix(KEYS["a"]) == f"_INBOX.{KEYS['a']}"


@pytest.mark.parametrize("role", [r for r in ROLES if r != "engine"])
def test_nobody_but_the_engine_writes_events_or_work_orders(role: str) -> None:
    user = _users()[role]
    for subject in ("corridor.evt.v1.intent.IntentDispatched",
                    "corridor.evt.v2.intent.acme.IntentDispatched",
                    "corridor.dispatch.v1.us.us-lnd"):  # fmt: skip
        assert not allowed(user, subject), (role, subject)
    assert set(ENGINE_ONLY) <= set(user["permissions"]["publish"]["deny"])


def test_the_engine_may_do_everything() -> None:
    engine = _users()["engine"]
    assert allowed(engine, "corridor.dispatch.v1.us.us-lnd")
    assert allowed(engine, "_INBOX.anyone.x", what="subscribe")


def test_an_executor_takes_its_own_node_s_orders_only() -> None:
    executor = _users()["executor"]
    own = "executor-us-us-lnd"
    create = "$JS.API.CONSUMER.CREATE.CORRIDOR_DISPATCH"
    for subject in (
        f"{create}.{own}.corridor.dispatch.v1.us.us-lnd",
        f"$JS.API.CONSUMER.INFO.CORRIDOR_DISPATCH.{own}",
        f"$JS.API.CONSUMER.MSG.NEXT.CORRIDOR_DISPATCH.{own}",
        f"$JS.ACK.CORRIDOR_DISPATCH.{own}.1.2.3.4.5",
        "corridor.api.v1.intents.outcome.us-lnd",
        "corridor.api.v1.intents.status.executor.us-lnd",
        "corridor.health.v1.us.us-lnd",
    ):
        assert allowed(executor, subject), subject
    for subject in (
        # Another node's durable, or its own with any filter but its own subject.
        f"{create}.executor-eu-eu-lnd.corridor.dispatch.v1.eu.eu-lnd",
        f"{create}.{own}",
        f"{create}.{own}.corridor.dispatch.v1.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.CORRIDOR_DISPATCH.{own}",
        "$JS.API.CONSUMER.MSG.NEXT.CORRIDOR_DISPATCH.executor-eu-eu-lnd",
        "$JS.ACK.CORRIDOR_DISPATCH.executor-eu-eu-lnd.1.2.3.4.5",
        "$JS.API.STREAM.CREATE.CORRIDOR_DISPATCH",
        "corridor.api.v1.intents.outcome.eu-lnd", "corridor.api.v1.intents.outcome.us-us-lnd-fleet",
        "corridor.health.v1.eu.eu-lnd", "corridor.api.v1.intents.submit.us-lnd",
        "corridor.api.v1.intents.status", "corridor.api.v1.intents.get.executor.us-lnd",
        "corridor.api.v1.intents.status.executor.eu-lnd",
    ):  # fmt: skip
        assert not allowed(executor, subject), subject


def test_an_auditor_only_asks_and_reads_events() -> None:
    auditor = _users()["auditor"]
    for subject in (
        "corridor.api.v1.intents.get.auditor.aud-1",
        "corridor.api.v1.intents.status.auditor.aud-1",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.auditor-aud-1",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.auditor-aud-1.corridor.evt.>",
        "$JS.API.STREAM.MSG.GET.CORRIDOR_EVT",
        "$JS.FC.CORRIDOR_EVT.auditor-aud-1.y",
        "$JS.API.CONSUMER.MSG.NEXT.CORRIDOR_EVT.auditor-aud-1",
        "$JS.API.CONSUMER.DELETE.CORRIDOR_EVT.auditor-aud-1",
    ):
        assert allowed(auditor, subject), subject
    assert allowed(auditor, "corridor.evt.v2.intent.acme.IntentSettled", what="subscribe")
    assert allowed(auditor, "corridor.evt.v1.intent.IntentSettled", what="subscribe")
    for subject in (
        "corridor.api.v1.intents.submit.aud-1",
        "corridor.cmd.v1.intents.submit.aud-1",
        "corridor.api.v1.intents.approve.aud-1",
        "corridor.health.v1.us.us-lnd",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_DISPATCH",
        "$JS.API.STREAM.DELETE.CORRIDOR_EVT",
        "$JS.API.CONSUMER.DELETE.CORRIDOR_EVT.x",
        "$JS.API.CONSUMER.MSG.NEXT.CORRIDOR_EVT.someone-else",
        # The plain create names its consumer in the body: any consumer (ADR 0067).
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.caller-acme",
        "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.caller-acme.corridor.evt.v2.intent.acme.>",
        "$JS.API.CONSUMER.DURABLE.CREATE.CORRIDOR_EVT.auditor-aud-1",
    ):
        assert not allowed(auditor, subject), subject


def test_an_operator_decides_under_its_own_id() -> None:
    operator = _users()["operator"]
    for subject in (
        "corridor.api.v1.intents.approve.op-1",
        "corridor.api.v1.intents.reject.op-1",
        "corridor.api.v1.policy.propose.op-1",
        "corridor.api.v1.policy.approve.op-1",
        subjects.POLICY_SHOW,
        subjects.POLICY_CORRIDORS,
    ):
        assert allowed(operator, subject), subject
    for subject in (
        "corridor.api.v1.intents.approve.op-2",
        "corridor.api.v1.policy.approve.op-2",
        "corridor.api.v1.intents.submit.op-1",
    ):
        assert not allowed(operator, subject), subject


def test_placeholders_are_filled_from_the_credential() -> None:
    executor = next(c for c in EVERY_ROLE.credentials if c.role == "executor")
    permissions = user_permissions(executor)
    assert not any("{" in p for p in (*permissions.publish, *permissions.subscribe))


def test_revoked_credentials_are_not_served() -> None:
    registry = EVERY_ROLE.with_revoked("caller", "acme")
    keys = {u["nkey"] for u in render_authorization(registry)["users"]}
    assert KEYS["a"] not in keys and KEYS["b"] in keys


def test_no_live_credential_is_refused_not_rendered_open() -> None:
    with pytest.raises(InvalidCredential):
        render_authorization(Registry())
    only = Registry(credentials=(_credential("caller", "acme", KEYS["a"]),))
    with pytest.raises(InvalidCredential):
        render_authorization(only.with_revoked("caller", "acme"))


def test_one_key_twice_is_refused() -> None:
    twice = Registry(
        credentials=(
            _credential("caller", "acme", KEYS["a"]),
            _credential("agent", "bot", KEYS["a"]),
        )
    )
    with pytest.raises(InvalidCredential):
        render_authorization(twice)


def test_the_config_text_is_the_block() -> None:
    text = authorization_conf(EVERY_ROLE)
    assert text.startswith("authorization: ")
    assert json.loads(text.removeprefix("authorization: ")) == render_authorization(EVERY_ROLE)


def test_rendering_is_pure() -> None:
    assert render_authorization(EVERY_ROLE) == render_authorization(EVERY_ROLE)


# -- seed files and the registry ---------------------------------------------------------------


def test_ensure_makes_a_private_seed_once(tmp_path: Path) -> None:
    path = nats_auth.ensure(tmp_path, role="caller", ident="local", kind="service")
    assert path == tmp_path / "auth" / "caller-local.nk"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    registry = load_registry(registry_path(tmp_path))
    (credential,) = registry.live()
    assert credential.public_key == nats_auth.read_public_key(path)
    assert str(path.read_bytes().strip().decode()) not in registry_path(tmp_path).read_text()
    again = nats_auth.ensure(tmp_path, role="caller", ident="local", kind="service")
    assert again == path and load_registry(registry_path(tmp_path)) == registry


def test_ensure_replaces_a_credential_whose_seed_is_lost(tmp_path: Path) -> None:
    path = nats_auth.ensure(tmp_path, role="auditor", ident="aud-1")
    old = nats_auth.read_public_key(path)
    path.unlink()
    nats_auth.ensure(tmp_path, role="auditor", ident="aud-1")
    registry = load_registry(registry_path(tmp_path))
    assert registry.by_public_key(old).revoked  # type: ignore[union-attr]
    assert registry.find("auditor", "aud-1").public_key == nats_auth.read_public_key(path)  # type: ignore[union-attr]


def test_issue_writes_the_seed_where_asked_and_never_over_a_file(tmp_path: Path) -> None:
    out = tmp_path / "acme.nk"
    credential = nats_auth.issue(tmp_path / "state", role="caller", ident="acme", out=out,
                                 kind="human")  # fmt: skip
    assert credential.kind == "human" and nats_auth.read_public_key(out) == credential.public_key
    with pytest.raises(InvalidCredential, match="exists"):
        nats_auth.issue(tmp_path / "state", role="caller", ident="other", out=out, kind="service")
    with pytest.raises(InvalidCredential, match="already exists"):
        nats_auth.issue(tmp_path / "state", role="caller", ident="acme", out=tmp_path / "2.nk",
                        kind="service")  # fmt: skip
    assert not (tmp_path / "2.nk").exists()


def test_an_executor_credential_names_its_node(tmp_path: Path) -> None:
    with pytest.raises(InvalidCredential):
        nats_auth.issue(tmp_path, role="executor", ident="us-lnd", out=tmp_path / "x.nk")
    credential = nats_auth.issue(tmp_path, role="executor", ident="us-lnd", region="us",
                                 node="us-lnd", out=tmp_path / "x.nk")  # fmt: skip
    assert (credential.region, credential.node) == ("us", "us-lnd")


def test_revoke_keeps_the_record(tmp_path: Path) -> None:
    path = nats_auth.ensure(tmp_path, role="operator", ident="operator-1")
    registry = nats_auth.revoke(tmp_path, role="operator", ident="operator-1")
    assert registry.find("operator", "operator-1") is None
    assert [c.revoked for c in registry.credentials] == [True]
    assert not path.exists()


def test_a_file_that_is_not_a_seed_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nk"
    bad.write_text("hello\n")
    with pytest.raises(nats_auth.CredentialFileError, match=r"bad\.nk"):
        nats_auth.read_public_key(bad)
    with pytest.raises(nats_auth.CredentialFileError, match="cannot read"):
        nats_auth.read_public_key(tmp_path / "missing.nk")


def test_agent_keys_humans_propose_and_revoke_operators_also_approve() -> None:
    """ADR 0068: services and agents change no keys; a human proposes and revokes under its own
    id; only an operator approves."""
    human = Credential(id="alice", role="caller", kind="human", public_key=KEYS["g"])
    rendered = render_authorization(Registry(credentials=(*EVERY_ROLE.credentials, human)))
    users = {**_users(), "human": next(u for u in rendered["users"] if u["nkey"] == KEYS["g"])}
    prefix = subjects.AGENTS_API_PREFIX
    for role, ident in (("caller", "acme"), ("agent", "bot"), ("auditor", "aud-1")):
        for verb in ("propose", "approve", "revoke"):
            assert not allowed(users[role], f"{prefix}.{verb}.{ident}"), (role, verb)
    assert allowed(users["human"], f"{prefix}.propose.alice")
    assert allowed(users["human"], f"{prefix}.revoke.alice")
    assert not allowed(users["human"], f"{prefix}.approve.alice")
    assert not allowed(users["human"], f"{prefix}.propose.bob")
    for verb in ("propose", "approve", "revoke"):
        assert allowed(users["operator"], f"{prefix}.{verb}.op-1")
        assert not allowed(users["operator"], f"{prefix}.{verb}.op-2")
    assert allowed(users["auditor"], f"{subjects.AGENTS_LIST}.auditor.aud-1")


def test_a_caller_reads_its_own_events_only() -> None:
    """Live on its own subtree; history through its own consumer with its own subtree as the
    filter, in the create subject (ADR 0067)."""
    for role, ident in (("caller", "acme"), ("agent", "bot")):
        user = _users()[role]
        own = f"corridor.evt.v2.intent.{ident}"
        assert allowed(user, f"{own}.IntentSettled", what="subscribe")
        assert allowed(user, f"{own}.>", what="subscribe")
        for other in (
            "corridor.evt.>", "corridor.evt.v2.intent.*.IntentSettled",
            "corridor.evt.v2.intent.globex.IntentSettled", "corridor.evt.v1.intent.IntentSettled",
            "corridor.evt.v2.policy.>",
        ):  # fmt: skip
            assert not allowed(user, other, what="subscribe"), (role, other)
        name = f"{role}-{ident}"
        for subject in (
            f"$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.{name}.{own}.>",
            f"$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.{name}.{own}.IntentSettled",
            f"$JS.API.CONSUMER.MSG.NEXT.CORRIDOR_EVT.{name}",
            f"$JS.API.CONSUMER.DELETE.CORRIDOR_EVT.{name}",
        ):
            assert allowed(user, subject), subject


def test_the_engine_cannot_remove_checkpoints() -> None:
    engine = _users()["engine"]
    assert allowed(engine, "$JS.API.STREAM.CREATE.CORRIDOR_CHECKPOINTS")
    assert allowed(engine, "corridor.checkpoints.v1.log")
    for verb in ("DELETE", "PURGE", "UPDATE", "MSG.DELETE", "RESTORE"):
        assert not allowed(engine, f"$JS.API.STREAM.{verb}.CORRIDOR_CHECKPOINTS"), verb
    assert allowed(engine, "$JS.API.STREAM.UPDATE.CORRIDOR_EVT")


def test_only_an_operator_acknowledges_an_anomaly_and_under_its_own_id() -> None:
    users = _users()
    assert allowed(users["operator"], f"{subjects.API_PREFIX}.acknowledge.op-1")
    assert not allowed(users["operator"], f"{subjects.API_PREFIX}.acknowledge.op-2")
    for role, ident in (("caller", "acme"), ("agent", "bot"), ("executor", "us-lnd"),
                        ("auditor", "aud-1"), ("reconciler", "us-lnd")):  # fmt: skip
        assert not allowed(users[role], f"{subjects.API_PREFIX}.acknowledge.{ident}"), role


def test_channel_operations_are_operators_and_reports_the_nodes_own() -> None:
    """ADR 0234: operators open and close under their own id; a node's executor reports
    under its node only; callers and agents may not ask for a channel."""
    opens = f"{subjects.API_PREFIX}.channel_open.op-1"
    closes = f"{subjects.API_PREFIX}.channel_close.op-1"
    operator = user_permissions(EVERY_ROLE.credentials[2])
    executor = user_permissions(EVERY_ROLE.credentials[3])
    caller = user_permissions(EVERY_ROLE.credentials[0])
    agent = user_permissions(EVERY_ROLE.credentials[1])

    def may(perms: object, subject: str) -> bool:
        return any(matches(p, subject) for p in perms.publish)  # type: ignore[attr-defined]

    assert may(operator, opens) and may(operator, closes)
    assert not may(operator, f"{subjects.API_PREFIX}.channel_open.op-2")
    assert may(executor, f"{subjects.API_PREFIX}.channel_report.us-lnd")
    assert not may(executor, f"{subjects.API_PREFIX}.channel_report.eu-lnd")
    for other in (caller, agent, executor):
        assert not may(other, opens)
