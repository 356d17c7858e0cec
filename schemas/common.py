"""Value types shared by commands, events and replies."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas import limits

AmountMsat = Annotated[int, msgspec.Meta(ge=0, le=limits.AMOUNT_MSAT_MAX)]
PositiveAmountMsat = Annotated[int, msgspec.Meta(gt=0, le=limits.AMOUNT_MSAT_MAX)]
CallerId = Annotated[str, msgspec.Meta(pattern=limits.CALLER_ID_PATTERN)]
IntentId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Corridor = Annotated[str, msgspec.Meta(pattern=limits.CORRIDOR_PATTERN)]
Region = Annotated[str, msgspec.Meta(pattern=limits.REGION_PATTERN)]
NodePubkey = Annotated[str, msgspec.Meta(pattern=limits.NODE_PUBKEY_PATTERN)]
Hex32 = Annotated[str, msgspec.Meta(pattern=limits.HEX32_PATTERN)]
Reason = Annotated[str, msgspec.Meta(max_length=limits.REASON_CHARS_MAX)]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.METADATA_KEY_CHARS_MAX)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=limits.METADATA_VALUE_CHARS_MAX)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=limits.METADATA_ENTRIES_MAX)
]

CallerKind = Literal["human", "agent", "service"]


class Caller(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: CallerId
    kind: CallerKind


class ErrorDetail(msgspec.Struct, frozen=True):
    """A structured error: a stable machine code, a one-line message, the offending field."""

    code: str
    message: str
    field: str | None = None
    # The limit the command went over, where one did (``agent_limit_exceeded``).
    limit: int | None = None


class Message(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """Base of every wire message: ``type`` is the class name, ``version`` its schema version."""
