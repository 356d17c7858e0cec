"""Checks shared by every adapter's on-chain calls (channel open and close)."""

from __future__ import annotations

from typing import Final

from services.lightning.port import CHANNEL_MEMO_CHARS_MAX

MSAT_PER_SAT: Final = 1000
# A fee rate above this is a unit mistake (sat/kvB given as sat/vB), not a choice.
SAT_PER_VBYTE_MAX: Final = 10_000


def whole_sats(local_amount_msat: int, push_msat: int, sat_per_vbyte: int) -> tuple[int, int]:
    """(funding sat, push sat). On-chain amounts are whole satoshis; raises ``ValueError``
    before any node call."""
    if local_amount_msat <= 0 or local_amount_msat % MSAT_PER_SAT:
        raise ValueError("local_amount_msat must be a positive whole number of satoshis")
    if not 0 <= push_msat < local_amount_msat or push_msat % MSAT_PER_SAT:
        raise ValueError("push_msat must be whole satoshis below local_amount_msat")
    check_fee_rate(sat_per_vbyte)
    return local_amount_msat // MSAT_PER_SAT, push_msat // MSAT_PER_SAT


def check_fee_rate(sat_per_vbyte: int) -> None:
    if not 0 < sat_per_vbyte <= SAT_PER_VBYTE_MAX:
        raise ValueError(f"sat_per_vbyte must be within [1, {SAT_PER_VBYTE_MAX}]")


def split_channel_point(channel_point: str) -> tuple[str, int]:
    """``txid:index`` as (txid, index); raises ``ValueError`` for anything else."""
    txid, _, index = channel_point.partition(":")
    if len(txid) != 64 or not index.isdigit():
        raise ValueError(f"not a channel point (txid:index): {channel_point[:80]!r}")
    bytes.fromhex(txid)
    return txid, int(index)


def check_memo(memo: str) -> str:
    if len(memo) > CHANNEL_MEMO_CHARS_MAX:
        raise ValueError(f"memo longer than {CHANNEL_MEMO_CHARS_MAX} characters")
    return memo
