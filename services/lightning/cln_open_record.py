"""A channel open on Core Lightning, found again without a channel memo (ADR 0235).

lnd keeps a memo with the channel; lightningd's ``fundchannel`` has no label. So the adapter
writes a record in the node's own ``datastore`` under ``["corridor", "open", <id>]`` (``<id>``
is the memo after ``corridor:open:``) **before** ``fundchannel``, and the funding outpoint into
it right after. The record lives on the node, beside the channel it describes, so it survives
our process as the channel does; ``list_channels``/``pending_channels`` show its memo on the
channel with that outpoint.

A record without an outpoint means an earlier open's outcome is unknown (killed between the
record and the funding, or between the funding and the outpoint write). It is resolved from the
node's channels: one channel to that peer, opened by us, of that capacity, that no other record
claims, is the earlier open (the outpoint is written, nothing is opened). None: the funding
either never happened or is still being built, so nothing is opened until
``UNKNOWN_ATTEMPT_BLOCKS`` blocks have passed since the attempt; by then a broadcast funding
would show in ``listpeerchannels``. A definite refusal (the node answered no funds, dust, unknown
peer) marks the record refused, and the next attempt goes ahead at once.

Schemas: doc/schemas/datastore.json and listdatastore.json upstream (ElementsProject/lightning);
1202 "already exists", 1203 "does not exist", 1204 "wrong generation".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import structlog

from services.lightning.port import ChannelOpening, FailureReason, NodeError

log = structlog.get_logger(__name__)

RECORD_ROOT: Final = ("corridor", "open")
MEMO_PREFIX: Final = "corridor:open:"
# 1202 the key exists, 1203 it does not, 1204 another writer updated it first.
CONFLICT_CODES: Final = frozenset({1202, 1203, 1204})
# How long an attempt whose funding is not on the node stays "unknown" before a new attempt
# may fund: fundchannel negotiates with the peer and broadcasts within seconds to a minute, so
# six blocks (an hour on mainnet, six seconds under ``corridor up``'s miner) are far beyond it.
UNKNOWN_ATTEMPT_BLOCKS: Final = 6
# Refusals lightningd answers before anything is funded (channel_errors.CLN_CODES 300-313);
# a timeout or a dropped connection is not one of them.
DEFINITE_REFUSALS: Final = frozenset(
    {FailureReason.INSUFFICIENT_LIQUIDITY, FailureReason.INCORRECT_DETAILS}
)


class RecordConflict(Exception):
    """The datastore refused the write: another delivery changed the record first."""


class OpenRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    memo: str
    peer: str
    amount_sat: int
    height: int  # the node's block height when the attempt was recorded
    txid: str = ""
    outnum: int = -1
    refused: bool = False


Rpc = Callable[[str, dict[str, Any]], Awaitable[Any]]
_decode = msgspec.json.Decoder(OpenRecord)


def record_key(memo: str) -> list[str]:
    return [*RECORD_ROOT, memo.removeprefix(MEMO_PREFIX)]


def _parse(entry: dict[str, Any]) -> OpenRecord | None:
    try:
        return _decode.decode(entry.get("string", ""))
    except msgspec.DecodeError:
        return None  # not ours (someone else wrote under our key): never matched


async def memos_by_point(rpc: Rpc) -> dict[str, str]:
    """Every recorded open's funding outpoint, with its memo."""
    listed = await rpc("listdatastore", {"key": list(RECORD_ROOT)})
    memos: dict[str, str] = {}
    for entry in listed.get("datastore", ()):
        record = _parse(entry)
        if record is not None and record.txid:
            memos[f"{record.txid}:{record.outnum}"] = record.memo
    return memos


async def open_recorded(
    rpc: Rpc,
    *,
    memo: str,
    peer: str,
    amount_sat: int,
    fund: Callable[[], Awaitable[ChannelOpening]],
) -> ChannelOpening:
    """Fund once per memo: the node's record answers a repeat; raises ``NodeError`` (and funds
    nothing) while an earlier attempt's outcome is unknown or the node cannot be asked."""
    key = record_key(memo)
    tip = int((await rpc("getinfo", {}))["blockheight"])
    attempt = OpenRecord(memo=memo, peer=peer, amount_sat=amount_sat, height=tip)
    listed = (await rpc("listdatastore", {"key": key}))["datastore"]
    try:
        if not listed or "generation" not in listed[0]:
            generation = await _write(rpc, key, attempt, mode="must-create")
        else:
            earlier = _parse(listed[0])
            if earlier is None:
                raise NodeError(FailureReason.INCORRECT_DETAILS, f"datastore {key} is not ours")
            if earlier.txid:
                return _opening(earlier.txid, earlier.outnum)
            if not earlier.refused:
                found = await _unclaimed_funding(rpc, earlier)
                if found is not None:
                    claimed = _funded(earlier, *found)
                    await _write(rpc, key, claimed, generation=listed[0]["generation"])
                    log.info("cln_open_record_resolved", memo=memo, txid=found[0])
                    return _opening(*found)
                if tip < earlier.height + UNKNOWN_ATTEMPT_BLOCKS:
                    raise NodeError(
                        FailureReason.UNKNOWN,
                        f"an earlier open for this memo is not on the node yet; nothing is "
                        f"opened before block {earlier.height + UNKNOWN_ATTEMPT_BLOCKS}",
                    )
            generation = await _write(rpc, key, attempt, generation=listed[0]["generation"])
    except RecordConflict:
        raise NodeError(FailureReason.UNKNOWN, "another delivery is opening this channel") from None
    try:
        opening = await fund()
    except NodeError as exc:
        if exc.reason in DEFINITE_REFUSALS:
            refused = msgspec.structs.replace(attempt, refused=True)
            await _best_effort(rpc, key, refused, generation)
        raise
    await _best_effort(
        rpc, key, _funded(attempt, opening.funding_txid, opening.output_index), generation
    )
    return opening


async def _unclaimed_funding(rpc: Rpc, earlier: OpenRecord) -> tuple[str, int] | None:
    """The one channel we opened to the record's peer with its capacity that no record claims."""
    claimed = set(await memos_by_point(rpc))
    channels = (await rpc("listpeerchannels", {"id": earlier.peer}))["channels"]
    candidates = [
        (c["funding_txid"], int(c["funding_outnum"]))
        for c in channels
        if c.get("opener") == "local"
        and "funding_txid" in c
        and int(c.get("total_msat", 0)) == earlier.amount_sat * 1000
        and f"{c['funding_txid']}:{c['funding_outnum']}" not in claimed
    ]
    if len(candidates) > 1:
        # Two unclaimed channels of the same size to the same peer: which one is ours is not
        # for the adapter to guess, and opening a third is worse. An operator decides.
        raise NodeError(
            FailureReason.UNKNOWN, f"{len(candidates)} unrecorded opens could be this memo's"
        )
    return candidates[0] if candidates else None


def _funded(record: OpenRecord, txid: str, outnum: int) -> OpenRecord:
    return msgspec.structs.replace(record, txid=txid, outnum=outnum, refused=False)


def _opening(txid: str, outnum: int) -> ChannelOpening:
    return ChannelOpening(channel_point=f"{txid}:{outnum}", funding_txid=txid, output_index=outnum)


async def _write(
    rpc: Rpc,
    key: list[str],
    record: OpenRecord,
    *,
    mode: str = "must-replace",
    generation: int | None = None,
) -> int:
    payload: dict[str, Any] = {
        "key": key,
        "string": msgspec.json.encode(record).decode(),
        "mode": mode,
    }
    if generation is not None:
        payload["generation"] = generation
    written = await rpc("datastore", payload)
    return int(written.get("generation", 0))


async def _best_effort(rpc: Rpc, key: list[str], record: OpenRecord, generation: int) -> None:
    """The outcome after the funding call: if this write is lost, the next lookup resolves the
    record from the node's channels (the module docstring), so a failure here is logged only."""
    try:
        await _write(rpc, key, record, generation=generation)
    except (NodeError, RecordConflict) as exc:
        log.warning("cln_open_record_not_updated", key=key, error=str(exc)[:200])
