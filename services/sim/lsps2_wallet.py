"""A simulated payee wallet as LSPS2 client (bLIP-52, the client side): a wallet with an LSP
and no channel that can carry the payment buys a JIT channel before it writes the invoice.

Like the mobile wallets that do this, the node asks ``lsps2.get_info``, takes the first menu
entry whose payment sizes fit, computes the opening fee itself (the spec's routine), buys
with the invoice amount ("MPP+fixed-invoice"; without an amount it buys without a size,
"no-MPP+var-invoice"), and writes the invoice with one route hint: the LSP, the
``jit_channel_scid``, zero fees, ``lsp_cltv_expiry_delta``; its expiry ends at
``valid_until`` at the latest. It accepts the HTLC short by the ``extra_fee``, up to that fee.
The LSPS0 messages go over the simulator's custom messages, to whoever reads the LSP's.
"""

from __future__ import annotations

import datetime
from typing import Any, Final

from services.domain.jit_channels.fees import compute_opening_fee
from services.lightning.sim_direct import SimNodeAdapter
from services.lsps import lsps0
from services.lsps.client import LspsClient
from services.sim.records import SimInvoice, SimRouteHint

# An LSP answers in milliseconds; a wallet gives up (and the invoice fails) after this.
LSPS2_CALL_TIMEOUT_S: Final = 10.0
# bLIP-52: the client aborts on a promise over 512 bytes.
PROMISE_CHARS_MAX: Final = 512


class JitBuyFailed(Exception):
    """The LSP refused or could not be asked; the wallet writes no invoice."""


def needs_jit(network: Any, wallet: str, amount_msat: int | None) -> bool:
    """Whether the wallet has no channel able to receive ``amount_msat`` (any, if None)."""
    need = amount_msat or 1
    return not any(c.active and c.remote_balance_msat >= need for c in network.channels_of(wallet))


def _fits(entry: dict[str, Any], amount_msat: int | None) -> bool:
    if amount_msat is None:
        return True
    low = lsps0.amount(entry["min_payment_size_msat"], field="min_payment_size_msat")
    high = lsps0.amount(entry["max_payment_size_msat"], field="max_payment_size_msat")
    return low <= amount_msat <= high


async def jit_invoice(
    network: Any, wallet: str, lsp: str, amount_msat: int | None, memo: str, expiry_s: int
) -> SimInvoice:
    lsp_pubkey = network.node(lsp).pubkey
    adapter = SimNodeAdapter(network, wallet)
    try:
        async with LspsClient(adapter) as client:
            await client.ready(lsp_pubkey, timeout_s=LSPS2_CALL_TIMEOUT_S)
            info = await client.call(
                lsp_pubkey, "lsps2.get_info", {}, timeout_s=LSPS2_CALL_TIMEOUT_S
            )
            menu = info.get("opening_fee_params_menu")
            if not isinstance(menu, list):
                raise JitBuyFailed("lsps2.get_info answered no menu")
            entry = next((e for e in menu if isinstance(e, dict) and _fits(e, amount_msat)), None)
            if entry is None:
                raise JitBuyFailed("no menu entry fits the amount")
            if len(str(entry.get("promise", ""))) > PROMISE_CHARS_MAX:
                raise JitBuyFailed("the promise is over 512 bytes")
            min_fee = lsps0.amount(entry["min_fee_msat"], field="min_fee_msat")
            fee = compute_opening_fee(amount_msat or 0, min_fee, int(entry["proportional"]))
            if fee is None or (amount_msat is not None and fee >= amount_msat):
                raise JitBuyFailed("the opening fee overflows or eats the payment")
            params: dict[str, Any] = {"opening_fee_params": entry}
            if amount_msat is not None:
                params["payment_size_msat"] = lsps0.amount_str(amount_msat)
            bought = await client.call(
                lsp_pubkey, "lsps2.buy", params, timeout_s=LSPS2_CALL_TIMEOUT_S
            )
    except lsps0.LspsError as exc:
        raise JitBuyFailed(f"the LSP refused: {exc.code} {exc.message}") from None
    finally:
        await adapter.close()
    if bought.get("client_trusts_lsp"):
        raise JitBuyFailed("the LSP asks to be trusted (client_trusts_lsp)")
    valid_until = datetime.datetime.fromisoformat(str(entry["valid_until"])).timestamp()
    expiry_s = max(1, min(expiry_s, int(valid_until - network.now_s())))
    hint = SimRouteHint(
        pubkey=lsp_pubkey, short_channel_id=str(bought["jit_channel_scid"]),
        cltv_expiry_delta=int(bought["lsp_cltv_expiry_delta"]),
    )  # fmt: skip
    # Without a size the fee depends on the HTLC; the wallet accepts up to the menu's
    # promise for its own amount (none given: the minimum fee).
    invoice: SimInvoice = network.create_invoice(
        wallet, amount_msat, memo, expiry_s, route_hint=hint, jit_fee_max_msat=fee
    )
    return invoice
