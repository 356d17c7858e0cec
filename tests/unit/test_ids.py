"""The engine's deterministic ids are exactly RFC 4122 version-5 UUIDs."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.engine import ids


@given(caller=st.text(max_size=80), key=st.text(max_size=200))
def test_intent_ids_are_uuid5(caller: str, key: str) -> None:
    expected = str(uuid.uuid5(ids._INTENT_NS, f"{caller}\x1f{key}"))
    assert ids.intent_id_for(caller, key) == expected


@given(stream_id=st.text(max_size=80), version=st.integers(min_value=1, max_value=2**40))
def test_event_ids_are_uuid5(stream_id: str, version: int) -> None:
    expected = str(uuid.uuid5(ids._EVENT_NS, f"{stream_id}/{version}"))
    assert ids.event_id_for(stream_id, version) == expected
