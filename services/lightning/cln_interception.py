"""Core Lightning interception for ``ClnAdapter`` (InterceptorPort, ADR 0260), through
Corridor's ``htlc_accepted`` plugin (``cln_plugin/corridor_htlc.py``): lightningd gives the
hook only to plugins, so the adapter long-polls the plugin's ``corridor-waitheldhtlcs`` and
answers with ``corridor-resolvehtlc``. A new poll from index 0 lists every HTLC still held:
the replay a reconnecting reader needs (lightningd itself replays at startup).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any, Final, Protocol

from services.lightning.interceptor_port import (
    FailHtlc,
    HeldHtlc,
    HtlcResolution,
    SettleHtlc,
)
from services.lightning.port import FailureReason, NodeError

WAIT_SLICE_S: Final = 5
# BOLT 4 failure messages (type only; neither carries data): unknown_next_peer is
# PERM|10, temporary_node_failure NODE|2 (a temporary_channel_failure would need a
# channel_update we do not have for a channel that does not exist yet).
FAILURE_MESSAGES: Final = {"unknown_next_peer": "400a", "temporary_channel_failure": "2002"}
_NORMAL: Final = "CHANNELD_NORMAL"


class _Node(Protocol):
    """What these calls need of ``ClnAdapter``: its JSON-RPC call."""

    def _call(
        self,
        method: str,
        payload: dict[str, Any] | None = ...,
        *,
        duplicate_codes: frozenset[int] = ...,
        timeout_s: float | None = ...,
    ) -> Coroutine[Any, Any, Any]: ...


def held_of(entry: dict[str, Any]) -> HeldHtlc:
    return HeldHtlc(
        incoming_channel_id=str(entry["incoming_channel_id"]),
        htlc_id=int(entry["htlc_id"]),
        payment_hash=str(entry["payment_hash"]),
        incoming_amount_msat=int(entry["amount_msat"]),
        outgoing_amount_msat=int(entry["forward_msat"]),
        outgoing_scid=str(entry["short_channel_id"]),
        incoming_expiry=int(entry["cltv_expiry"]),
        outgoing_expiry=int(entry["outgoing_cltv_value"]),
        auto_fail_height=0,  # lightningd has no auto-fail: the plugin holds until told
    )


async def held_htlcs(node: _Node, timeout_s: float) -> AsyncIterator[HeldHtlc]:
    cursor = 0
    while True:
        try:
            got = await node._call(
                "corridor-waitheldhtlcs",
                {"after_index": cursor, "timeout": WAIT_SLICE_S},
                timeout_s=WAIT_SLICE_S + timeout_s,
            )
        except NodeError as exc:
            raise NodeError(
                exc.reason, f"{exc} (is Corridor's HTLC plugin loaded? see ADR 0260)"
            ) from None
        for entry in got["htlcs"]:
            yield held_of(entry)
        cursor = max(cursor, int(got["next_index"]))


async def resolve(node: _Node, htlc: HeldHtlc, resolution: HtlcResolution) -> None:
    params: dict[str, Any] = {"key": f"{htlc.incoming_channel_id}/{htlc.htlc_id}"}
    if isinstance(resolution, SettleHtlc):
        params |= {"action": "resolve", "payment_key": resolution.preimage}
    elif isinstance(resolution, FailHtlc):
        params |= {"action": "fail", "failure_message": FAILURE_MESSAGES[resolution.failure]}
    else:
        params["action"] = "continue"
        if resolution.out_amount_msat is not None:
            params["forward_msat"] = resolution.out_amount_msat
        if resolution.extra_fee_msat:
            params["extra_fee_msat"] = resolution.extra_fee_msat
        if resolution.next_peer_pubkey is not None:
            listed = await node._call("listpeerchannels", {"id": resolution.next_peer_pubkey})
            normal = [c for c in listed["channels"] if c.get("state") == _NORMAL]
            if not normal:
                raise NodeError(FailureReason.NO_ROUTE, "cln: no open channel to the next peer")
            params["forward_to"] = normal[0]["channel_id"]
    await node._call("corridor-resolvehtlc", params)
