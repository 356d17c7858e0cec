"""A credential issued with an expiry stops working at it: the engine's and the HTTP API's
lookups refuse it, and the server's users list leaves it out."""

from __future__ import annotations

import pytest

from services.identity.lookup import IndexedRegistry
from services.identity.nats_auth import new_seed, public_key_of, render_authorization
from services.identity.registry import Credential, Registry

NOW_MS = 1_800_000_000_000


def credential(ident: str, expires_at_ms: int | None) -> Credential:
    return Credential(id=ident, role="caller", public_key=public_key_of(new_seed()),
                      kind="service", expires_at_ms=expires_at_ms, api_key_sha256="a" * 64
                      if ident == "keyed" else None)  # fmt: skip


@pytest.mark.parametrize(("expires_at_ms", "found"), [
    (None, True), (NOW_MS + 1, True), (NOW_MS, False), (NOW_MS - 1, False),
])  # fmt: skip
def test_lookups_refuse_an_expired_credential(expires_at_ms: int | None, found: bool) -> None:
    keyed = credential("keyed", expires_at_ms)
    indexed = IndexedRegistry(Registry(credentials=(keyed,)), now_ms=lambda: NOW_MS)
    assert (indexed.find("caller", "keyed") is not None) is found
    assert (indexed.by_api_key_hash("a" * 64) is not None) is found


def test_the_servers_users_leave_out_expired_credentials() -> None:
    live, gone = credential("live", None), credential("gone", 1)  # expired in 1970
    users = render_authorization(Registry(credentials=(live, gone)))["users"]
    assert [u["nkey"] for u in users] == [live.public_key]
