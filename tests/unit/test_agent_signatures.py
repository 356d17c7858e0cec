"""Agents sign their commands (ADR 0066): the wire format's test vector, and each refusal.

The vector is the one the ADR and docs/agents.md print, so that an outside implementer can
check theirs byte for byte. Its key is RFC 8032's TEST 1 key.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas import errors
from schemas.agent_key_messages import ApproveAgentKey, ProposeAgentKey, RevokeAgentKey
from services.domain.agent_keys import decide, fold
from services.domain.principal import Principal
from services.identity.agent_keys import (
    AgentKeys,
    IndexedAgentKeys,
    InvalidAgentKey,
    agent_key,
    from_registry,
)
from services.identity.agent_signatures import (
    HDR_KEY_ID,
    HDR_SIGNATURE,
    canonical_bytes,
    sign_command,
    verify_agent_command,
)
from services.identity.lookup import IndexedRegistry
from services.identity.registry import Credential, Registry
from services.intake.identity import Authenticator
from services.intake.parsing import parse_command
from services.signing.port import b64url

# --- the test vector (ADR 0066) -------------------------------------------------------------
PRIVATE_KEY_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
PUBLIC_KEY_B64 = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
KEY_ID = "21fe31dfa154a261"
BODY = b"""{"type": "SubmitPaymentIntent", "version": 1, "idempotency_key": "order-42",
 "caller": {"kind": "agent", "id": "bot-7"}, "corridor": "us-eu",
 "amount_msat": 50000, "max_fee_msat": 1000,
 "destination": "021111111111111111111111111111111111111111111111111111111111111111"}"""
CANONICAL = (
    b'{"amount_msat":50000,"caller":{"id":"bot-7","kind":"agent"},"corridor":"us-eu",'
    b'"destination":"021111111111111111111111111111111111111111111111111111111111111111",'
    b'"idempotency_key":"order-42","max_fee_msat":1000,"type":"SubmitPaymentIntent",'
    b'"version":1}'
)
SIGNATURE = "oZroE8G0LkI9JSlzW-olZyFaZmHP50EMiI5BLJ9OQnIfN_lvX7igHQYWpVppXh4u3fHpm9e_Kq35MF1VcyynDA"
SUBJECT = "corridor.api.v1.intents.submit.bot-7"
PREFIX = "corridor.api.v1.intents"

KEY = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(PRIVATE_KEY_HEX))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _b64(key: Ed25519PrivateKey) -> str:
    return b64url(key.public_key().public_bytes_raw())


def _keys(*, revoked: bool = False, amount_msat_max: int | None = None) -> IndexedAgentKeys:
    entry = agent_key("bot-7", PUBLIC_KEY_B64, amount_msat_max=amount_msat_max)
    entry = msgspec.structs.replace(entry, revoked=revoked)
    other = agent_key("bot-8", _b64(OTHER))
    return IndexedAgentKeys(AgentKeys(keys=(entry, other)))


def _body(**changes: object) -> bytes:
    obj = json.loads(BODY)
    obj.update(changes)
    return json.dumps(obj).encode()


def test_the_vector_canonical_bytes_key_id_and_signature() -> None:
    assert canonical_bytes(BODY) == CANONICAL
    assert b64url(KEY.public_key().public_bytes_raw()) == PUBLIC_KEY_B64
    assert sign_command(KEY, BODY) == {HDR_KEY_ID: KEY_ID, HDR_SIGNATURE: SIGNATURE}
    headers = {HDR_KEY_ID: KEY_ID, HDR_SIGNATURE: SIGNATURE}
    assert verify_agent_command("bot-7", BODY, headers, _keys()).key_id == KEY_ID


def test_canonical_bytes_ignore_layout_and_drop_signature_members_only() -> None:
    compact = json.dumps(json.loads(BODY), separators=(",", ":"), sort_keys=False).encode()
    assert canonical_bytes(compact) == CANONICAL
    with_sig = _body(signature="x", key_id="y")
    assert canonical_bytes(with_sig) == CANONICAL
    assert canonical_bytes(_body(idempotency_key="order-43")) != CANONICAL


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',  # the engine and the signer must read the same object
        b'{"amount_msat": 9007199254740992}',  # 2**53: outside JCS's integers
        b'{"a": NaN}',
        b"[1]",
        b"not json",
    ],
)
def test_bodies_without_one_canonical_form_are_refused(body: bytes) -> None:
    with pytest.raises(errors.SignatureInvalid) as refused:
        canonical_bytes(body)
    assert refused.value.field == "body"


def _refusal(agent: str, body: bytes, headers: dict[str, str] | None, keys: object) -> tuple:
    with pytest.raises(errors.CorridorError) as refused:
        verify_agent_command(agent, body, headers, keys, amount_msat=50_000)  # type: ignore[arg-type]
    return refused.value.code, refused.value.field


def test_each_refusal_has_its_code_and_field() -> None:
    good = {HDR_KEY_ID: KEY_ID, HDR_SIGNATURE: SIGNATURE}
    keys = _keys()
    assert _refusal("bot-7", BODY, None, keys) == ("signature_missing", HDR_KEY_ID)
    assert _refusal("bot-7", BODY, {HDR_KEY_ID: KEY_ID}, keys) == (
        "signature_missing",
        HDR_SIGNATURE,
    )
    unknown = {**good, HDR_KEY_ID: "0" * 16}
    assert _refusal("bot-7", BODY, unknown, keys) == ("signature_invalid", HDR_KEY_ID)
    # bot-8 presenting bot-7's key, or its own key with bot-7's signature.
    assert _refusal("bot-8", BODY, good, keys) == ("signature_invalid", HDR_KEY_ID)
    forged = sign_command(OTHER, BODY)
    assert _refusal("bot-7", BODY, forged, keys) == ("signature_invalid", HDR_KEY_ID)
    relabelled = {**forged, HDR_KEY_ID: KEY_ID}
    assert _refusal("bot-7", BODY, relabelled, keys) == ("signature_invalid", HDR_SIGNATURE)
    # Replayed for another command: another idempotency key, another amount.
    for other in (_body(idempotency_key="order-43"), _body(amount_msat=50_001)):
        assert _refusal("bot-7", other, good, keys) == ("signature_invalid", HDR_SIGNATURE)
    padded = {**good, HDR_SIGNATURE: SIGNATURE + "=="}
    assert _refusal("bot-7", BODY, padded, keys) == ("signature_invalid", HDR_SIGNATURE)
    # A revoked key: told only to whoever signs with it.
    assert _refusal("bot-7", BODY, good, _keys(revoked=True)) == ("key_revoked", HDR_KEY_ID)
    assert _refusal("bot-7", _body(amount_msat=1), good, _keys(revoked=True))[0] == (
        "signature_invalid"
    )
    over = _keys(amount_msat_max=49_999)
    assert _refusal("bot-7", BODY, good, over) == ("agent_limit_exceeded", "amount_msat")
    at_limit = _keys(amount_msat_max=50_000)
    assert verify_agent_command("bot-7", BODY, good, at_limit, amount_msat=50_000)


def test_header_names_are_matched_without_case() -> None:
    headers = {HDR_KEY_ID.lower(): KEY_ID, HDR_SIGNATURE.upper(): SIGNATURE}
    assert verify_agent_command("bot-7", BODY, headers, _keys()).key_id == KEY_ID


# --- the intake: only agents are asked for a signature --------------------------------------
REGISTRY = IndexedRegistry(
    Registry(
        credentials=(
            Credential(id="bot-7", role="agent", kind="agent", public_key="U" + "A" * 55),
            Credential(id="alice", role="caller", kind="service", public_key="U" + "B" * 55),
        )
    )
)


def test_parse_command_asks_agents_only_for_a_signature() -> None:
    auth = Authenticator(REGISTRY, agent_keys=_keys())
    headers = {HDR_KEY_ID: KEY_ID, HDR_SIGNATURE: SIGNATURE}
    envelope = parse_command(SUBJECT, PREFIX, BODY, headers, authenticator=auth)
    assert envelope.principal == Principal(role="agent", id="bot-7")
    with pytest.raises(errors.SignatureMissing):
        parse_command(SUBJECT, PREFIX, BODY, None, authenticator=auth)
    alice = _body(caller={"id": "alice", "kind": "service"})
    envelope = parse_command(f"{PREFIX}.submit.alice", PREFIX, alice, None, authenticator=auth)
    assert envelope.principal == Principal(role="caller", id="alice")


def test_a_registry_without_agent_keys_trusts_no_agent() -> None:
    headers = {HDR_KEY_ID: KEY_ID, HDR_SIGNATURE: SIGNATURE}
    with pytest.raises(errors.SignatureInvalid):
        parse_command(SUBJECT, PREFIX, BODY, headers, authenticator=Authenticator(REGISTRY))


# --- the keys the log trusts (ADR 0068) -------------------------------------------------------
def test_only_approved_keys_verify_and_revoked_ones_say_so() -> None:
    """A proposal awaiting approval is not trusted at all (``signature_invalid``, as an unknown
    key); approved, it verifies; revoked, a good signature is ``key_revoked``."""
    alice, op = Principal(role="caller", id="alice"), Principal(role="operator", id="op-2")
    headers = {HDR_KEY_ID: KEY_ID, HDR_SIGNATURE: SIGNATURE}
    propose = ProposeAgentKey(agent_id="bot-7", public_key=PUBLIC_KEY_B64, proposer_id="alice")
    events = decide(None, propose, actor=alice, now_ms=1)
    state = fold(events)
    with pytest.raises(errors.SignatureInvalid):
        verify_agent_command("bot-7", BODY, headers, from_registry(state))
    approve = ApproveAgentKey(key_id=KEY_ID, approver_id="op-2")
    events += decide(state, approve, actor=op, now_ms=2)
    state = fold(events)
    key = verify_agent_command("bot-7", BODY, headers, from_registry(state))
    assert (key.key_id, key.sponsor_id) == (KEY_ID, "alice")
    events += decide(state, RevokeAgentKey(agent_id="bot-7", revoker_id="alice"), actor=alice,
                     now_ms=3)  # fmt: skip
    with pytest.raises(errors.KeyRevoked):
        verify_agent_command("bot-7", BODY, headers, from_registry(fold(events)))


def test_entries_the_engine_must_not_trust_are_refused() -> None:
    entry = agent_key("bot-7", PUBLIC_KEY_B64)
    with pytest.raises(InvalidAgentKey, match="key_id"):
        AgentKeys(keys=(msgspec.structs.replace(entry, key_id="0" * 16),)).check()
    with pytest.raises(InvalidAgentKey):
        agent_key("bot-7", PUBLIC_KEY_B64[:-2])


# --- the CLI: an integrator's round trip --------------------------------------------------
def test_cli_keygen_sign_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from services.cli.main import main

    assert main(["agents", "keygen", "--out", str(tmp_path / "bot.key"), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert (tmp_path / "bot.key").stat().st_mode & 0o077 == 0
    command = tmp_path / "command.json"
    command.write_bytes(BODY)
    assert main(["agents", "sign", "--key", str(tmp_path / "bot.key"), "--file", str(command),
                 "--json"]) == 0  # fmt: skip
    headers = json.loads(capsys.readouterr().out)
    assert headers[HDR_KEY_ID] == made["key_id"]
    keys = IndexedAgentKeys(AgentKeys(keys=(agent_key("bot-7", made["public_key"]),)))
    assert verify_agent_command("bot-7", BODY, headers, keys, amount_msat=50_000)
    # keygen never overwrites a key: a usage error, not a traceback.
    assert main(["agents", "keygen", "--out", str(tmp_path / "bot.key")]) == 2


def test_the_integrator_guide_signs_the_vector() -> None:
    """docs/agents.md's Python example, run as printed: it must give the vector's headers."""
    import re

    guide = (Path(__file__).resolve().parents[2] / "docs" / "agents.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", guide, re.S)
    namespace: dict[str, object] = {}
    exec(example.split("async def main")[0], namespace)  # our own document, nothing else
    sign = namespace["sign"]
    assert callable(sign)
    assert sign(KEY, BODY) == {HDR_KEY_ID: KEY_ID, HDR_SIGNATURE: SIGNATURE}
