"""The edge refuses what PostgreSQL cannot store and what nests too deep (issue 13, 1 and 5).

Each refusal is coded and names the field, so one caller's bad text never reaches a group
commit that other callers' commands share.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import codec, errors, limits
from tests.factories import submit


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _refusal(raw: bytes) -> errors.CorridorError:
    with pytest.raises(errors.CorridorError) as refused:
        codec.decode_command(raw)
    return refused.value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (submit(key="k\u0000"), "idempotency_key"),
        (submit(metadata={"note": "a\u0000b"}), "metadata.note"),
        (submit(metadata={"no\u0000te": "ab"}), "metadata"),
        (
            {"type": "CancelPaymentIntent", "version": 1, "intent_id": "i\u0000",
             "caller": {"id": "alice", "kind": "service"}},
            "intent_id",
        ),
        (
            {"type": "RecordPaymentOutcome", "version": 1, "intent_id": "i-1", "attempt": 1,
             "outcome": "failed", "region": "us", "node": "us-lnd", "detail": "\u0000"},
            "detail",
        ),
    ],
)  # fmt: skip
def test_text_postgres_cannot_store_is_refused_with_its_field(
    body: dict[str, Any], field: str
) -> None:
    refusal = _refusal(_raw(body))
    assert (refusal.code, refusal.field) == ("unstorable_text", field)


def test_an_escaped_backslash_before_u0000_is_ordinary_text() -> None:
    # The six characters \u0000 are storable; only the escape that decodes to U+0000 is not.
    command = codec.decode_command(_raw(submit(key="k\\u0000")))
    assert command.idempotency_key == "k\\u0000"  # type: ignore[union-attr]


def test_a_lone_surrogate_is_refused_as_malformed_json() -> None:
    raw = _raw(submit(key="k-1")).replace(b'"k-1"', b'"k\\ud800"')
    assert _refusal(raw).code == "malformed_json"


@pytest.mark.parametrize("where", ["unknown", "metadata"])
def test_thirty_thousand_levels_are_refused_with_a_code(where: str) -> None:
    deep = "[" * 30_000 + "]" * 30_000  # 60,000 bytes: under the 64 KiB message limit
    body = json.dumps(submit(metadata={"a": "b"}))
    body = body[:-1] + f', "x": {deep}}}' if where == "unknown" else body.replace('"b"', deep)
    refusal = _refusal(body.encode())
    assert (refusal.code, refusal.message) == (
        "nesting_too_deep",
        "JSON is nested deeper than 32 levels",
    )


def test_the_depth_limit_is_exact() -> None:
    from schemas import storable

    # The message's own object is the first level.
    def message(inner: int) -> bytes:
        return ('{"x":' + "[" * inner + "]" * inner + "}").encode()

    storable.check_nesting(message(limits.NESTING_DEPTH_MAX - 1))
    with pytest.raises(errors.NestingTooDeep):
        storable.check_nesting(message(limits.NESTING_DEPTH_MAX))


def test_brackets_inside_strings_do_not_count() -> None:
    from schemas import storable

    text = "[{" * 40 + '\\"'
    storable.check_nesting(json.dumps({"a": text, "b": [[{}], {"c": []}] * 20}).encode())


@given(depth=st.integers(min_value=1, max_value=80), kinds=st.text("[{", min_size=80))
def test_the_fast_check_agrees_with_a_plain_depth_count(depth: int, kinds: str) -> None:
    from schemas import storable

    opens = kinds[:depth]
    raw = (opens + "".join("]" if c == "[" else "}" for c in reversed(opens))).encode()
    # {} pairs need keys to be JSON; the bracket skeleton is what is measured here.
    if depth <= limits.NESTING_DEPTH_MAX:
        storable.check_nesting(raw)
    else:
        with pytest.raises(errors.NestingTooDeep):
            storable.check_nesting(raw)


@pytest.mark.parametrize(
    ("value", "code"),
    [("c-\u0000", "unstorable_text"), ("c-\udc80", "unstorable_text"),
     ("c" * 257, "schema_violation")],
)  # fmt: skip
def test_headers_that_reach_the_log_follow_the_same_rule(value: str, code: str) -> None:
    from schemas import storable

    assert limits.HEADER_ID_CHARS_MAX == 256
    with pytest.raises(errors.CorridorError) as refused:
        storable.check_header("Corridor-Correlation-Id", value)
    assert (refused.value.code, refused.value.field) == (code, "Corridor-Correlation-Id")
    storable.check_header("Corridor-Correlation-Id", "c-é-1")
