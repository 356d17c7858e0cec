"""What a message must be for PostgreSQL to store it, checked at the edge before decoding ends.

Two rules, both named in ``schemas.limits``:

- **No U+0000** in any string or key, nested ones included (``TEXT_CHARS_FORBIDDEN``).
  PostgreSQL's text and jsonb cannot hold it, and the engine commits many commands in one
  transaction: one such string would fail every other command of the batch.
- **Nesting no deeper than ``NESTING_DEPTH_MAX``**, in unknown fields too: the JSON decoder
  recurses per level and would raise ``RecursionError`` instead of a coded refusal.

Both cost a cheap scan of the raw bytes on the hot path (one ``bytes.translate`` and one
``in``, under a microsecond for a 500-byte submit); the exact check runs only on a message the
scan cannot clear.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from schemas import errors, limits

# JSON can carry U+0000 only as this escape: a raw NUL byte is malformed JSON.
_NUL_ESCAPE = b"\\u0000"
# A JSON string, escapes included (possessive, so a long string costs one linear pass).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_AN_OPENER = bytes(b for b in range(256) if b not in b"[{")
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")


def check_nesting(raw: bytes) -> None:
    """Refuse JSON nested deeper than ``NESTING_DEPTH_MAX`` (``nesting_too_deep``)."""
    depth_max = limits.NESTING_DEPTH_MAX
    # One pass in C (a delete table), about half the cost of two ``bytes.count`` calls.
    if len(raw.translate(None, _NOT_AN_OPENER)) <= depth_max:
        return  # fewer opening brackets than the limit: it cannot be nested deeper
    # Brackets outside strings only; then peel one level of empty pairs per round.
    skeleton = _JSON_STRING.sub(b"", raw).translate(None, _NOT_A_BRACKET)
    for _ in range(depth_max):
        skeleton, peeled = _EMPTY_PAIR.subn(b"", skeleton)
        if not skeleton or not peeled:
            break
    if skeleton:
        # Deeper than the limit (or brackets that never match: malformed JSON, refused too).
        raise errors.NestingTooDeep(f"JSON is nested deeper than {depth_max} levels")


def check_text(raw: bytes, message: msgspec.Struct) -> None:
    """Refuse a decoded ``message`` holding text PostgreSQL cannot store
    (``unstorable_text``, ``field`` the path of the first such string or key)."""
    if _NUL_ESCAPE not in raw:
        return  # the usual case: nothing to find
    for path in _paths_with_nul(msgspec.to_builtins(message), ""):
        raise errors.UnstorableText(
            "text may not contain U+0000 (PostgreSQL cannot store it)", field=path or None
        )


def check_header(name: str, value: str) -> None:
    """A header value that ends up in the log (correlation and causation ids)."""
    if len(value) > limits.HEADER_ID_CHARS_MAX:
        raise errors.SchemaViolation(
            f"header {name} is {len(value)} characters, limit is {limits.HEADER_ID_CHARS_MAX}",
            field=name,
        )
    if not _storable(value):
        raise errors.UnstorableText(f"header {name} holds U+0000 or is not valid UTF-8", field=name)


def _storable(text: str) -> bool:
    if limits.TEXT_CHARS_FORBIDDEN in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()  # a lone surrogate (a header's undecodable byte) cannot be UTF-8
    except UnicodeEncodeError:
        return False
    return True


def _paths_with_nul(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, str):
        if limits.TEXT_CHARS_FORBIDDEN in value:
            yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key_text = str(key)
            if limits.TEXT_CHARS_FORBIDDEN in key_text:
                yield path  # the key itself: name the object that holds it
                continue
            yield from _paths_with_nul(item, f"{path}.{key_text}" if path else key_text)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _paths_with_nul(item, f"{path}[{index}]")
