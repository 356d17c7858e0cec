"""The simulated lightningd's ``htlc_accepted`` hook (ADR 0260), for HTLCs the network holds
at this node for an unknown next channel (interception.py).

With a plugin registered for the hook, the node intercepts: each such HTLC is offered to the
plugins as ``htlc_accepted`` (request shaped by doc/schemas/hook/htlc_accepted.json) and the
verdict applied: ``continue`` forwards (the payload's amt_to_forward and ``extra_tlvs``'s
extra_fee, type 65537, are read as lightningd would), ``fail`` fails it back, ``resolve``
settles it with ``payment_key``. HTLCs already held when the node starts are offered again,
as lightningd replays at startup. Only the HTLCs the simulator holds reach the hook: an
ordinary forward does not (lightningd calls it for every HTLC; plugins answer ``continue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any, Final

import structlog

from services.sim.cln_plugins import PluginHost
from services.sim.interception import EXTRA_FEE_TLV, InterceptError, SimInterceptedHtlc
from services.sim.network import SimNetwork

log = structlog.get_logger(__name__)

AMT_TO_FORWARD: Final = 2
OUTGOING_CLTV: Final = 4
SHORT_CHANNEL_ID: Final = 6


def _bigsize(value: int) -> bytes:
    if value < 0xFD:
        return value.to_bytes(1, "big")
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


def _read_bigsize(data: bytes, at: int) -> tuple[int, int]:
    first = data[at]
    if first < 0xFD:
        return first, at + 1
    width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    return int.from_bytes(data[at + 1 : at + 1 + width], "big"), at + 1 + width


def tlv_records(data: bytes) -> dict[int, bytes]:
    out, at = {}, 0
    while at < len(data):
        kind, at = _read_bigsize(data, at)
        length, at = _read_bigsize(data, at)
        out[kind] = data[at : at + length]
        at += length
    return out


def _scid_bytes(scid: str) -> bytes:
    block, tx, out = (int(p) for p in scid.split("x"))
    return ((block << 40) | (tx << 16) | out).to_bytes(8, "big")


def onion_payload(htlc: SimInterceptedHtlc) -> str:
    """A BOLT 4 forwarding payload: amt_to_forward, outgoing_cltv_value, short_channel_id."""
    records = (
        (AMT_TO_FORWARD, htlc.outgoing_amount_msat.to_bytes(8, "big").lstrip(b"\x00")),
        (OUTGOING_CLTV, htlc.outgoing_expiry.to_bytes(4, "big").lstrip(b"\x00")),
        (SHORT_CHANNEL_ID, _scid_bytes(htlc.outgoing_requested_scid)),
    )
    return b"".join(_bigsize(k) + _bigsize(len(v)) + v for k, v in records).hex()


def hook_request(network: SimNetwork, htlc: SimInterceptedHtlc) -> dict[str, Any]:
    digest = hashlib.sha256(f"{htlc.incoming_channel_id}/{htlc.htlc_id}".encode()).hexdigest()
    return {
        "peer_id": htlc.peer_pubkey,
        "onion": {
            "payload": onion_payload(htlc),
            "type": "tlv",
            "short_channel_id": htlc.outgoing_requested_scid,
            "forward_msat": htlc.outgoing_amount_msat,
            "outgoing_cltv_value": htlc.outgoing_expiry,
            # The simulator carries no onion packet: fixed stand-ins of the right shape.
            "next_onion": "00" * 1366,
            "shared_secret": digest,
        },
        "htlc": {
            "short_channel_id": htlc.incoming_channel_id,
            "id": htlc.htlc_id,
            "amount_msat": htlc.incoming_amount_msat,
            "cltv_expiry": htlc.incoming_expiry,
            "cltv_expiry_relative": htlc.incoming_expiry - network.block_height,
            "payment_hash": htlc.payment_hash,
        },
    }


class ClnHtlcHook:
    """Offers this node's held HTLCs to its ``htlc_accepted`` plugins, one task each."""

    def __init__(self, network: SimNetwork, node: str, host: PluginHost) -> None:
        self._network = network
        self._node = node
        self._host = host
        self._pump: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if not self._host.has_hook("htlc_accepted") or self._pump is not None:
            return
        self._network.enable_interception(self._node)
        self._pump = asyncio.get_running_loop().create_task(self._offer())

    async def stop(self) -> None:
        tasks = [t for t in (self._pump, *self._calls) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pump = None
        self._calls.clear()

    async def _offer(self) -> None:
        with self._network.watch_interceptions(self._node) as queue:
            for htlc in self._network.intercepted_htlcs(self._node):  # the startup replay
                self._call(htlc)
            while True:
                self._call(await queue.get())

    def _call(self, htlc: SimInterceptedHtlc) -> None:
        task = asyncio.get_running_loop().create_task(self._verdict(htlc))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _verdict(self, htlc: SimInterceptedHtlc) -> None:
        answer = await self._host.call_hook("htlc_accepted", hook_request(self._network, htlc))
        if answer is None:
            return  # no verdict (the plugin broke or timed out): held until the next start
        try:
            self._apply(htlc, answer)
        except (InterceptError, ValueError, KeyError) as exc:
            # lightningd would fail the HTLC on a verdict it cannot apply.
            log.warning("sim_cln_htlc_verdict_refused", node=self._node, detail=str(exc))
            with contextlib.suppress(InterceptError):
                self._network.resolve_intercepted(self._node, htlc.circuit_key, "fail")

    def _apply(self, htlc: SimInterceptedHtlc, answer: dict[str, Any]) -> None:
        result = answer.get("result")
        key = htlc.circuit_key
        if result == "fail":
            self._network.resolve_intercepted(self._node, key, "fail")
        elif result == "resolve":
            preimage = str(answer["payment_key"])
            self._network.resolve_intercepted(self._node, key, "settle", preimage=preimage)
        else:
            amount = htlc.outgoing_amount_msat
            if "payload" in answer:
                raw = tlv_records(bytes.fromhex(str(answer["payload"]))).get(AMT_TO_FORWARD)
                amount = int.from_bytes(raw, "big") if raw else amount
            records: dict[int, bytes] = {}
            if "extra_tlvs" in answer:
                extra = tlv_records(bytes.fromhex(str(answer["extra_tlvs"])))
                if EXTRA_FEE_TLV in extra:
                    records[EXTRA_FEE_TLV] = extra[EXTRA_FEE_TLV]
            self._network.resolve_intercepted(
                self._node, key, "resume_modified", out_amount_msat=amount,
                out_wire_custom_records=records,
            )  # fmt: skip
