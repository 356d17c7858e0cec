"""LSPS0 framing and dispatch (bLIP-50), with the spec's own examples as inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.lsps import lsps0
from services.lsps.server import LspsDispatcher, Method

# bLIP-50 "LSPS Specification Support Query".
LIST_PROTOCOLS_REQUEST = b"""{
  "method": "lsps0.list_protocols",
  "jsonrpc": "2.0",
  "id": "example#3cad6a54d302edba4c9ade2f7ffac098",
  "params": {}
}"""
LIST_PROTOCOLS_RESPONSE = b"""{
  "jsonrpc": "2.0",
  "id": "example#3cad6a54d302edba4c9ade2f7ffac098",
  "result": {
    "protocols": [1, 3],
    "example-undefined-key-that-clients-should-ignore": true
  }
}"""
# bLIP-50 "-32602 Invalid Parameters Error".
UNRECOGNIZED_REQUEST = b"""{
  "jsonrpc": "2.0",
  "method": "example.method_name",
  "params": {
    "future_feature1_param": "value1",
    "future_feature2_param": "value2"
  },
  "id": "42"
}"""


@pytest.mark.parametrize("payload", [b" { } ", b"{}", b"\t{ }\r\n"])
def test_one_object_with_whitespace_parses(payload: bytes) -> None:
    assert lsps0.parse_object(payload) == {}


@pytest.mark.parametrize(
    "payload",
    [b"{", b" [ ] ", b" { } { ", b" { } { }", b'{"a":"\x00"}', b"\xff{}", b"1", b""],
)
def test_the_specs_bad_message_formats_are_refused(payload: bytes) -> None:
    with pytest.raises(lsps0.BadMessage):
        lsps0.parse_object(payload)


def test_payload_size_and_nesting_are_bounded() -> None:
    with pytest.raises(lsps0.BadMessage):
        lsps0.parse_object(b"{" + b" " * lsps0.PAYLOAD_BYTES_MAX + b"}")
    deep = b'{"a":' * (lsps0.NESTING_MAX + 1) + b"{}" + b"}" * (lsps0.NESTING_MAX + 1)
    with pytest.raises(lsps0.BadMessage):
        lsps0.parse_object(deep)


def test_the_list_protocols_example_round_trips() -> None:
    request = lsps0.parse_request(LIST_PROTOCOLS_REQUEST)
    assert request.method == "lsps0.list_protocols" and request.params == {}
    reply = lsps0.parse_reply(LIST_PROTOCOLS_RESPONSE)
    assert isinstance(reply, lsps0.Response)
    assert reply.id == request.id and reply.result is not None
    assert reply.result["protocols"] == [1, 3]  # the unknown key is simply ignored


@pytest.mark.parametrize(
    "payload",
    [
        b'{"jsonrpc":"2.0","method":"m","params":{},"id":42}',  # ids are strings
        b'{"jsonrpc":"2.0","method":"m","params":[1],"id":"a"}',  # by-name only
        b'{"jsonrpc":"2.0","method":"m","params":{}}',  # clients never notify
        b'[{"jsonrpc":"2.0","method":"m","params":{},"id":"a"}]',  # no batches
        b'{"jsonrpc":"1.0","method":"m","params":{},"id":"a"}',
    ],
)
def test_requests_outside_the_lsps0_subset_are_bad_messages(payload: bytes) -> None:
    with pytest.raises(lsps0.BadMessage):
        lsps0.parse_request(payload)


def test_amounts_are_decimal_strings_never_numbers() -> None:
    assert lsps0.amount("5000000", field="lsp_balance_sat") == 5_000_000
    assert lsps0.amount("0", field="x") == 0
    for bad in (5000000, "5e6", "-1", "01", "1.5", "", "9" * 20, None):
        with pytest.raises(lsps0.LspsError) as refused:
            lsps0.amount(bad, field="lsp_balance_sat")
        assert refused.value.code == lsps0.INVALID_PARAMS
        assert refused.value.data is not None and refused.value.data["unrecognized"] == []
        assert refused.value.data["property"] == "lsp_balance_sat"


def _dispatcher() -> LspsDispatcher:
    async def echo(peer: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"peer": peer, **params}

    async def broken(peer: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("secret detail")

    return LspsDispatcher(
        {
            "example.method_name": Method(echo, frozenset({"future_feature2_param"})),
            "lsps1.get_info": Method(echo, frozenset()),
            "lsps3.broken": Method(broken, frozenset()),
        }
    )


async def test_an_unrecognized_parameter_gets_the_specs_answer() -> None:
    answer = json.loads(await _dispatcher().handle("02aa", UNRECOGNIZED_REQUEST))
    assert answer == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32602,
            "message": "Invalid params",
            "data": {"unrecognized": ["future_feature1_param"]},
        },
        "id": "42",
    }


async def test_a_bad_payload_gets_parse_error_with_a_null_id() -> None:
    answer = json.loads(await _dispatcher().handle("02aa", b" { } { }"))
    assert answer["id"] is None and answer["error"]["code"] == -32700


async def test_list_protocols_names_the_registered_lsps_without_zero() -> None:
    answer = json.loads(await _dispatcher().handle("02aa", LIST_PROTOCOLS_REQUEST))
    assert answer["result"] == {"protocols": [1, 3]}
    assert answer["id"] == "example#3cad6a54d302edba4c9ade2f7ffac098"


async def test_an_unknown_method_and_a_failing_handler_get_codes_not_text() -> None:
    dispatcher = _dispatcher()
    request = b'{"jsonrpc":"2.0","method":"lsps9.nope","params":{},"id":"x"}'
    assert json.loads(await dispatcher.handle("02aa", request))["error"]["code"] == -32601
    request = b'{"jsonrpc":"2.0","method":"lsps3.broken","params":{},"id":"y"}'
    answer = json.loads(await dispatcher.handle("02aa", request))
    assert answer["error"] == {"code": -32603, "message": "Internal error"}
    assert "secret" not in json.dumps(answer)


def test_replies_parse_results_errors_and_notifications() -> None:
    error = lsps0.parse_reply(
        b'{"jsonrpc":"2.0","id":"a","error":{"code":101,"message":"Not found","data":{}}}'
    )
    assert isinstance(error, lsps0.Response) and error.error is not None
    assert (error.error.code, error.error.data) == (101, {})
    note = lsps0.parse_reply(b'{"jsonrpc":"2.0","method":"lsps5.x","params":{}}')
    assert isinstance(note, lsps0.Notification)
    for bad in (
        b'{"jsonrpc":"2.0","id":"a","result":{},"error":{"code":1}}',
        b'{"jsonrpc":"2.0","id":"a","result":[1]}',
        b'{"jsonrpc":"2.0","id":7,"result":{}}',
    ):
        with pytest.raises(lsps0.BadMessage):
            lsps0.parse_reply(bad)
