"""lnd's three pending lists through one conversion (``lnd_convert.pending_channels``): every
entry keeps its outpoint, peer, amounts and memo; depth and closing txid come from its list."""

from __future__ import annotations

from services.lightning import lnd_convert
from services.lightning.lnd_proto import lightning_pb2 as ln


def _chan(index: int, memo: str) -> dict[str, object]:
    return {"channel_point": f"{'ab' * 32}:{index}", "remote_node_pub": "02" + "cd" * 32,
            "capacity": 1_000_000, "local_balance": 400_000, "memo": memo}  # fmt: skip


def test_opening_waiting_close_and_force_closing_entries() -> None:
    pending = ln.PendingChannelsResponse(
        pending_open_channels=[{"channel": _chan(0, "corridor:open:a"), "confirmation_height": 98}],
        waiting_close_channels=[{"channel": _chan(1, "b"), "closing_txid": "ef" * 32}],
        pending_force_closing_channels=[{"channel": _chan(2, "c"), "closing_txid": "12" * 32}],
    )
    opening, closing, forced = lnd_convert.pending_channels(pending, tip_height=100)
    assert (opening.state, opening.confirmations, opening.closing_txid) == ("opening", 3, None)
    assert (opening.capacity_msat, opening.local_balance_msat) == (10**9, 4 * 10**8)
    assert (closing.state, closing.confirmations, closing.closing_txid) == ("closing", 0, "ef" * 32)
    assert (forced.state, forced.closing_txid) == ("closing", "12" * 32)
    assert [p.memo for p in (opening, closing, forced)] == ["corridor:open:a", "b", "c"]
    assert [p.channel_point[-1] for p in (opening, closing, forced)] == ["0", "1", "2"]
