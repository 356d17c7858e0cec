"""Webhook parts without servers: secrets, signatures, URL rules, the endpoint aggregate,
the retry schedule and the caller's permissions (ADR 0175-0179)."""

from __future__ import annotations

import random
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from schemas import errors
from schemas.webhook_messages import (
    WEBHOOK_ENDPOINTS_PER_OWNER_MAX,
    WEBHOOK_URL_CHARS_MAX,
    DisableWebhookEndpoint,
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
)
from services.domain.webhooks.endpoint import WebhookRules, decide, evolve
from services.domain.webhooks.url_rules import check_url
from services.engine.webhook_planning import endpoint_id_for
from services.identity import nats_auth
from services.identity.registry import Credential
from services.webhooks import secrets
from services.webhooks.delivery import RetryPolicy, backoff_s
from services.webhooks.payload import from_recorded, signed_headers

RECORDED = {
    "type": "IntentSettled", "version": 1, "event_id": "evt-1", "stream_id": "pi_1",
    "stream_version": 5, "position": 42, "recorded_at_ms": 1_700_000_000_000,
    "metadata": {}, "data": {"fee_msat": 12}, "hash": "00", "prev_hash": "00",
}  # fmt: skip


def test_secrets_are_derived_per_endpoint_and_rotation_and_never_shown(tmp_path: Path) -> None:
    book = secrets.load_or_create(tmp_path)
    again = secrets.load_or_create(tmp_path)  # the same file: the same secrets
    assert book.secret("wh_a", 0) == again.secret("wh_a", 0)
    assert book.secret("wh_a", 0) != book.secret("wh_b", 0) != book.secret("wh_a", 1)
    assert book.secret("wh_a", 0).startswith("whsec_")
    assert "hidden" in repr(book) and book.secret("wh_a", 0)[6:] not in repr(book)
    path = secrets.master_key_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(Exception, match="0600"):
        secrets.load(path)


def test_a_delivery_verifies_with_standard_webhooks_and_a_replay_is_refused() -> None:
    secret = secrets.WebhookSecrets(b"k" * 32).secret("wh_a", 0)
    message = from_recorded(RECORDED)
    assert message is not None and message.webhook_id == "evt-1"
    now = datetime.now(tz=UTC)
    headers = signed_headers(message, secret, now)
    payload = Webhook(secret).verify(message.body.encode(), headers)
    assert payload["type"] == "IntentSettled" and payload["data"]["position"] == 42
    # A changed body, another secret, or an old timestamp (a replay) do not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(message.body.replace("12", "13").encode(), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secrets.WebhookSecrets(b"x" * 32).secret("wh_a", 0)).verify(
            message.body.encode(), headers
        )
    old = signed_headers(message, secret, now - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(message.body.encode(), old)


def test_only_settlement_events_become_webhooks() -> None:
    assert from_recorded({**RECORDED, "type": "IntentDispatched"}) is None


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/x", "schema_violation"),
        ("http://user:pw@example.com/", "schema_violation"),
        ("https://", "schema_violation"),
        ("http://example.com:99999/", "schema_violation"),
        ("https://example.com/" + "a" * WEBHOOK_URL_CHARS_MAX, "schema_violation"),
        ("http://127.0.0.1:8080/h", "forbidden"),
        ("http://localhost/h", "forbidden"),
        ("http://[::1]/h", "forbidden"),
    ],
)
def test_url_rules(url: str, code: str) -> None:
    with pytest.raises(errors.CorridorError) as raised:
        check_url(url, allow_loopback=False)
    assert raised.value.code == code and raised.value.field == "url"


def test_loopback_is_allowed_only_when_the_deployment_says_so() -> None:
    check_url("http://127.0.0.1:8080/h", allow_loopback=True)
    check_url("https://hooks.example.com/corridor", allow_loopback=False)


def _register(
    owner: str = "alice", key: str = "k", url: str = "https://a.example/h"
) -> tuple[RegisterWebhookEndpoint, str]:
    command = RegisterWebhookEndpoint(
        caller_id=owner, idempotency_key=key, url=url, event_types=("IntentSettled",)
    )
    return command, endpoint_id_for(owner, key)


def _decide(endpoint: Any, command: Any, endpoint_id: str, owner_active: int = 0) -> list[Any]:
    return decide(
        endpoint, command, endpoint_id=endpoint_id, owner_active=owner_active,
        rules=WebhookRules(), now_ms=1,
    )  # fmt: skip


def test_endpoints_belong_to_their_owner() -> None:
    command, endpoint_id = _register()
    [registered] = _decide(None, command, endpoint_id)
    endpoint = evolve(None, registered)
    assert endpoint.owner == "alice" and endpoint.active
    # The same registration again records nothing; another caller cannot remove it.
    assert _decide(endpoint, command, endpoint_id, 1) == []
    with pytest.raises(errors.NotFound):
        _decide(endpoint, RemoveWebhookEndpoint(caller_id="bob", endpoint_id=endpoint_id),
                endpoint_id)  # fmt: skip
    remove = RemoveWebhookEndpoint(caller_id="alice", endpoint_id=endpoint_id)
    [removed] = _decide(endpoint, remove, endpoint_id, 1)
    gone = evolve(endpoint, removed)
    assert not gone.active and gone.disabled_reason == "removed" and gone.version == 2
    # Disabling what is disabled already records nothing.
    disable = DisableWebhookEndpoint(endpoint_id=endpoint_id, reason="gone")
    assert _decide(gone, disable, endpoint_id) == []


def test_an_owner_has_a_bounded_number_of_endpoints() -> None:
    command, endpoint_id = _register()
    with pytest.raises(errors.Forbidden):
        _decide(None, command, endpoint_id, WEBHOOK_ENDPOINTS_PER_OWNER_MAX)
    assert _decide(None, command, endpoint_id, WEBHOOK_ENDPOINTS_PER_OWNER_MAX - 1)


def test_backoff_has_full_jitter_under_a_doubling_cap() -> None:
    policy = RetryPolicy(period_s=60, first_s=1.0, max_s=8.0, timeout_s=1)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(8.0, 2 ** (attempt - 1))
        delays = [backoff_s(policy, attempt, rng) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
    # Seeded: the same schedule every run.
    assert [backoff_s(policy, 3, random.Random(1)) for _ in range(2)] == [
        backoff_s(policy, 3, random.Random(1)) for _ in range(2)
    ]


def test_a_caller_may_publish_webhook_requests_for_itself_only() -> None:
    caller = Credential(id="acme", role="caller", public_key="U" + "A" * 55, kind="service",
                        created_at_ms=1)  # fmt: skip
    publish = nats_auth.user_permissions(caller).publish
    for verb in ("register", "remove", "list"):
        assert f"corridor.api.v1.webhooks.{verb}.acme" in publish
    assert not any(p.startswith("corridor.api.v1.webhooks") and not p.endswith(".acme")
                   for p in publish)  # fmt: skip
