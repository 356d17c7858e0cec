"""The LSPS2 server (bLIP-52) through the LSPS0 dispatcher: the menu's wire form, the
promise, and buy's errors 200/201/202/203/001; the sale decided by the real aggregate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.jit_messages import SellJitChannel
from schemas.replies import CommandAccepted
from services.domain.jit_channels import JitContext, Refusal, decide, evolve
from services.engine.ids import jit_sale_id_for, jit_scid_for
from services.engine.jit_planning import DEFAULT_JIT_POLICY
from services.lsps import lsps0
from services.lsps.lsps2_server import Lsps2Server, iso_ms, menu_from_settings, promise_key
from services.lsps.server import LspsDispatcher

NOW_MS = 1_700_000_000_000
CLIENT = "02" + "22" * 32
SECRET = promise_key(b"\x07" * 32)


class Engine:
    """The engine's decision for a sale, in process (the aggregate itself)."""

    def __init__(self) -> None:
        self.commands: list[SellJitChannel] = []

    async def sell(self, command: SellJitChannel) -> CommandAccepted:
        self.commands.append(command)
        scid = jit_scid_for(command.node, command.client_pubkey, command.request_id)
        ctx = JitContext(
            sale_id=jit_sale_id_for(command.node, scid), jit_scid=scid, now_ms=NOW_MS,
            policy=DEFAULT_JIT_POLICY,
        )  # fmt: skip
        decision = decide(None, command, ctx)
        assert not isinstance(decision, Refusal)
        state = evolve(None, decision[0])
        return CommandAccepted(
            intent_id=state.sale_id, state=str(state.status), duplicate=False,
            reason=state.refusal,
        )  # fmt: skip


def server(engine: Engine) -> LspsDispatcher:
    lsp = Lsps2Server(
        region="us", node_name="us-lnd", secret=SECRET, sell=engine.sell,
        now_ms=lambda: NOW_MS, cltv_expiry_delta=80,
    )  # fmt: skip
    return LspsDispatcher(lsp.methods())


async def call(dispatcher: LspsDispatcher, method: str, params: dict[str, Any]) -> dict[str, Any]:
    request = lsps0.Request(id="a" * 32, method=method, params=params)
    reply: dict[str, Any] = json.loads(
        await dispatcher.handle(CLIENT, lsps0.encode_request(request))
    )
    return reply


async def menu(dispatcher: LspsDispatcher) -> list[dict[str, Any]]:
    reply = await call(dispatcher, "lsps2.get_info", {})
    entries: list[dict[str, Any]] = reply["result"]["opening_fee_params_menu"]
    return entries


async def test_get_info_answers_the_menu_in_the_spec_s_wire_form() -> None:
    [entry] = await menu(server(Engine()))
    assert set(entry) == {
        "min_fee_msat", "proportional", "valid_until", "min_lifetime",
        "max_client_to_self_delay", "min_payment_size_msat", "max_payment_size_msat", "promise",
    }  # fmt: skip
    assert entry["min_fee_msat"] == "546000" and entry["proportional"] == 1200
    assert entry["valid_until"] == iso_ms(NOW_MS + 3600 * 1000)
    assert entry["valid_until"].endswith("Z") and len(entry["promise"]) == 64


async def test_a_token_we_never_issued_is_200() -> None:
    reply = await call(server(Engine()), "lsps2.get_info", {"token": "SECRETDISCOUNTCOUPON100"})
    assert reply["error"]["code"] == 200


async def test_buy_with_the_menu_entry_sells_and_answers_the_scid() -> None:
    engine = Engine()
    dispatcher = server(engine)
    [entry] = await menu(dispatcher)
    reply = await call(
        dispatcher, "lsps2.buy", {"opening_fee_params": entry, "payment_size_msat": "50000000"}
    )
    result = reply["result"]
    assert result["lsp_cltv_expiry_delta"] == 80 and result["client_trusts_lsp"] is False
    [command] = engine.commands
    assert result["jit_channel_scid"] == jit_scid_for("us-lnd", CLIENT, command.request_id)
    assert command.client_pubkey == CLIENT  # the client is the peer, never a payload field
    assert int(result["jit_channel_scid"].split("x")[0]) >= 16_000_000


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"promise": "abcdefghijklmnopqrstuvwxyz"}, 201),  # the spec's example promise
        ({"min_fee_msat": "1"}, 201),  # the promise commits to every field
        ({"extra": 1}, 201),  # exactly the spec's fields
    ],
)
async def test_buy_refuses_params_we_did_not_promise(change: dict[str, Any], code: int) -> None:
    engine = Engine()
    dispatcher = server(engine)
    [entry] = await menu(dispatcher)
    reply = await call(dispatcher, "lsps2.buy", {"opening_fee_params": {**entry, **change}})
    assert reply["error"]["code"] == code
    assert engine.commands == []


async def test_buy_past_valid_until_is_201() -> None:
    engine = Engine()
    early = Lsps2Server(
        region="us", node_name="us-lnd", secret=SECRET, sell=engine.sell,
        now_ms=lambda: NOW_MS - 3_600_001, cltv_expiry_delta=80,
    )  # fmt: skip
    [entry] = await menu(LspsDispatcher(early.methods()))
    reply = await call(server(engine), "lsps2.buy", {"opening_fee_params": entry})
    assert reply["error"]["code"] == 201


@pytest.mark.parametrize(
    ("size", "code"), [("999999", 202), ("10000000001", 203), ("5000000", 203)]
)
async def test_buy_sizes_refused_by_the_aggregate(size: str, code: int) -> None:
    # Below the menu's minimum is 202, above its maximum 203; 546000 of 5 M msat is over our
    # 5 % cap, answered 203 (ADR 0262).
    dispatcher = server(Engine())
    [entry] = await menu(dispatcher)
    reply = await call(
        dispatcher, "lsps2.buy", {"opening_fee_params": entry, "payment_size_msat": size}
    )
    assert reply["error"]["code"] == code, reply


def test_the_settings_menu_must_be_ordered() -> None:
    base = {
        "proportional": 1200, "valid_for_s": 600, "min_lifetime": 1008,
        "max_client_to_self_delay": 2016, "min_payment_size_msat": 1,
        "max_payment_size_msat": 10**9,
    }  # fmt: skip
    entries = menu_from_settings(
        {"a": {**base, "min_fee_msat": 1}, "b": {**base, "min_fee_msat": 2, "proportional": 2400}}
    )
    assert [e.min_fee_msat for e in entries] == [1, 2]
    with pytest.raises(ValueError):
        menu_from_settings({"a": {**base, "min_fee_msat": 2}, "b": {**base, "min_fee_msat": 1}})
    assert menu_from_settings({})[0].min_fee_msat == 546_000
