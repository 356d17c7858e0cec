"""Refusals of on-chain and channel-lifecycle calls (open, close) mapped onto the port's
taxonomy, one table per vendor. A refused open or close changed nothing on chain, so every row
is final for that call; ``UNKNOWN`` rows are worth retrying later (the HTLCs may clear).

Sources: lnd ``rpcserver.go`` (parseOpenChannelReq, CloseChannel) and
``lnwallet/chanfunding`` (https://github.com/lightningnetwork/lnd); Core Lightning
``common/jsonrpc_errors.h`` and doc/schemas/fundchannel.json, close.json
(https://github.com/ElementsProject/lightning).
"""

from __future__ import annotations

from typing import Final

from services.lightning.port import FailureReason, NodeError

_R = FailureReason

# The words a NodeError for missing on-chain funds starts with, whatever the vendor said.
INSUFFICIENT_FUNDS_TEXT: Final = "insufficient on-chain funds"

# lnd answers these as plain Go errors (gRPC UNKNOWN); matched on a lower-case substring.
LND_TEXTS: Final[tuple[tuple[str, FailureReason, str], ...]] = (
    ("not enough witness outputs", _R.INSUFFICIENT_LIQUIDITY, INSUFFICIENT_FUNDS_TEXT),
    ("insufficient funds", _R.INSUFFICIENT_LIQUIDITY, INSUFFICIENT_FUNDS_TEXT),
    ("channel is too small", _R.INCORRECT_DETAILS, "channel below the node's minimum size"),
    ("must be below the local funding amount", _R.INCORRECT_DETAILS, "push exceeds the amount"),
    ("is not online", _R.NODE_UNAVAILABLE, "peer not connected"),
    ("cannot open channel to self", _R.INCORRECT_DETAILS, "channel to ourselves"),
    ("channel not found", _R.INCORRECT_DETAILS, "unknown channel"),
    ("active htlcs", _R.UNKNOWN, "HTLCs in flight: close later"),
)

# Core Lightning's codes (common/jsonrpc_errors.h).
CLN_CODES: Final[dict[int, tuple[FailureReason, str]]] = {
    300: (_R.INCORRECT_DETAILS, "amount above the node's maximum channel size"),
    301: (_R.INSUFFICIENT_LIQUIDITY, INSUFFICIENT_FUNDS_TEXT),
    302: (_R.INCORRECT_DETAILS, "channel amount is dust"),
    305: (_R.NODE_UNAVAILABLE, "peer not connected"),
    306: (_R.INCORRECT_DETAILS, "unknown peer"),
    313: (_R.INSUFFICIENT_LIQUIDITY, INSUFFICIENT_FUNDS_TEXT),
    -32602: (_R.INCORRECT_DETAILS, "invalid parameters"),
}

# The simulator's own refusal codes (services/sim/channel_ops.ChannelRefused), read by the
# in-process adapter as the LND adapter reads lnd's texts for the same refusals.
SIM_CODES: Final[dict[str, tuple[FailureReason, str]]] = {
    "insufficient_funds": (_R.INSUFFICIENT_LIQUIDITY, INSUFFICIENT_FUNDS_TEXT),
    "too_small": (_R.INCORRECT_DETAILS, "channel below the node's minimum size"),
    "bad_push": (_R.INCORRECT_DETAILS, "push exceeds the amount"),
    "unknown_peer": (_R.NODE_UNAVAILABLE, "peer not connected"),
    "peer_offline": (_R.NODE_UNAVAILABLE, "peer not connected"),
    "self_channel": (_R.INCORRECT_DETAILS, "channel to ourselves"),
    "unknown_channel": (_R.INCORRECT_DETAILS, "unknown channel"),
    "pending_open": (_R.INCORRECT_DETAILS, "unknown channel"),
    "active_htlcs": (_R.UNKNOWN, "HTLCs in flight: close later"),
}


def lnd_error(call: str, details: str) -> NodeError | None:
    """The NodeError for lnd's refusal text, or ``None`` if the text is not in the table."""
    text = details.lower()
    for needle, reason, summary in LND_TEXTS:
        if needle in text:
            return NodeError(reason, f"{summary}: lnd {call}: {details}")
    return None


def cln_error(call: str, code: int | None, message: str) -> NodeError:
    reason, summary = CLN_CODES.get(code or 0, (_R.UNKNOWN, "refused"))
    return NodeError(reason, f"{summary}: cln {call} failed: {code} {message}")


def sim_error(call: str, code: str, message: str) -> NodeError:
    reason, summary = SIM_CODES.get(code, (_R.UNKNOWN, "refused"))
    return NodeError(reason, f"{summary}: sim {call}: {message}")
