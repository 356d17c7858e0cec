"""The LSPS2 server (bLIP-52) on our LSP node's executor: ``lsps2.get_info`` and
``lsps2.buy`` over LSPS0 (ADR 0261, 0262).

``get_info`` answers the fee menu from settings, each entry with ``valid_until`` from now and
its promise (HMAC with the server key; the key is never logged or sent anywhere). ``buy``
checks the promise and ``valid_until`` here (201), then records the sale with the engine,
whose aggregate judges sizes, overflow and our policy cap (202, 203). The sale's SCID and its
stream follow from (node, client, request): a retried buy is the same sale.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import msgspec
import structlog

from schemas.jit_messages import FeeParams, SellJitChannel
from schemas.replies import CommandAccepted
from services.domain.jit_channels.fees import (
    PROMISE_CHARS_MAX,
    FeeMenuEntry,
    OpeningFeeParams,
    menu_is_ordered,
    promise_holds,
    with_promise,
)
from services.engine.ids import jit_scid_for
from services.executor.errors import OutcomeRefused
from services.lsps import lsps0
from services.lsps.server import Method

log = structlog.get_logger(__name__)

UNRECOGNIZED_OR_STALE_TOKEN: Final = 200
INVALID_OPENING_FEE_PARAMS: Final = 201
PAYMENT_SIZE_TOO_SMALL: Final = 202
PAYMENT_SIZE_TOO_LARGE: Final = 203
PARAMS_FIELDS: Final = frozenset(
    {
        "min_fee_msat", "proportional", "valid_until", "min_lifetime",
        "max_client_to_self_delay", "min_payment_size_msat", "max_payment_size_msat", "promise",
    }
)  # fmt: skip
# A datetime string (ISO 8601) longer than this is no LSPS0 datetime.
DATETIME_CHARS_MAX: Final = 40
U32_MAX: Final = 2**32 - 1
DEFAULT_MENU: Final = (
    FeeMenuEntry(
        min_fee_msat=546_000,
        proportional=1200,
        valid_for_s=3600,
        min_lifetime=1008,
        max_client_to_self_delay=2016,
        min_payment_size_msat=1_000_000,
        max_payment_size_msat=10_000_000_000,
    ),
)
_REFUSALS: Final = {
    "invalid_opening_fee_params": (INVALID_OPENING_FEE_PARAMS, "invalid_opening_fee_params"),
    "payment_size_too_small": (PAYMENT_SIZE_TOO_SMALL, "payment_size_too_small"),
    "payment_size_too_large": (PAYMENT_SIZE_TOO_LARGE, "payment_size_too_large"),
    # Our policy cap: the spec's nearest code (the LSP will not take that size).
    "fee_over_policy": (PAYMENT_SIZE_TOO_LARGE, "payment_size_too_large"),
}

Sell = Callable[[SellJitChannel], Awaitable[CommandAccepted]]


def promise_key(node_secret: bytes) -> bytes:
    """The promise key, derived from the secret the node's workers share (keysend's), under
    a label of its own: every worker of the node verifies every other's promises."""
    return hmac.new(node_secret, b"corridor/lsps2-promise/v1", hashlib.sha256).digest()


def menu_from_settings(menu: dict[str, dict[str, int]]) -> tuple[FeeMenuEntry, ...]:
    entries = tuple(msgspec.convert(menu[name], FeeMenuEntry) for name in sorted(menu))
    entries = entries or DEFAULT_MENU
    if not menu_is_ordered(list(entries)):
        raise ValueError("jit_fee_menu is not ordered as bLIP-52 requires (each entry dearer)")
    return entries


def iso_ms(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso_ms(text: Any, *, field: str) -> int:
    if not isinstance(text, str) or len(text) > DATETIME_CHARS_MAX:
        raise lsps0.invalid_params(property=field, message="must be an ISO 8601 datetime")
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise lsps0.invalid_params(property=field, message="must be an ISO 8601 datetime") from None
    if moment.tzinfo is None:
        raise lsps0.invalid_params(property=field, message="must name its time zone")
    return int(moment.timestamp() * 1000)


def _u32(value: Any, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise lsps0.invalid_params(property=field, message="must be an unsigned integer")
    return value


class Lsps2Server:
    def __init__(
        self,
        *,
        region: str,
        node_name: str,
        secret: bytes,
        sell: Sell,
        now_ms: Callable[[], int],
        cltv_expiry_delta: int,
        menu: Sequence[FeeMenuEntry] = DEFAULT_MENU,
    ) -> None:
        self._region = region
        self._node_name = node_name
        self._secret = secret
        self._sell = sell
        self._now_ms = now_ms
        self._cltv_expiry_delta = cltv_expiry_delta
        self._menu = tuple(menu)

    def __repr__(self) -> str:
        return f"Lsps2Server(node={self._node_name!r}, secret=<redacted>)"

    def methods(self) -> dict[str, Method]:
        return {
            "lsps2.get_info": Method(self.get_info, frozenset({"token"})),
            "lsps2.buy": Method(self.buy, frozenset({"opening_fee_params", "payment_size_msat"})),
        }

    async def get_info(self, peer: str, params: dict[str, Any]) -> dict[str, Any]:
        if "token" in params:
            # We issue no tokens: any token is one we do not recognise (bLIP-52, 200).
            raise lsps0.LspsError(UNRECOGNIZED_OR_STALE_TOKEN, "unrecognized_or_stale_token")
        now_ms = self._now_ms()
        menu = [self._offer(entry, now_ms) for entry in self._menu]
        return {"opening_fee_params_menu": menu}

    def _offer(self, entry: FeeMenuEntry, now_ms: int) -> dict[str, Any]:
        params = with_promise(
            self._secret,
            OpeningFeeParams(
                min_fee_msat=entry.min_fee_msat, proportional=entry.proportional,
                valid_until=iso_ms(now_ms + entry.valid_for_s * 1000),
                min_lifetime=entry.min_lifetime,
                max_client_to_self_delay=entry.max_client_to_self_delay,
                min_payment_size_msat=entry.min_payment_size_msat,
                max_payment_size_msat=entry.max_payment_size_msat, promise="",
            ),
        )  # fmt: skip
        return {
            "min_fee_msat": lsps0.amount_str(params.min_fee_msat),
            "proportional": params.proportional,
            "valid_until": params.valid_until,
            "min_lifetime": params.min_lifetime,
            "max_client_to_self_delay": params.max_client_to_self_delay,
            "min_payment_size_msat": lsps0.amount_str(params.min_payment_size_msat),
            "max_payment_size_msat": lsps0.amount_str(params.max_payment_size_msat),
            "promise": params.promise,
        }

    async def buy(self, peer: str, params: dict[str, Any]) -> dict[str, Any]:
        offered = self._parse_params(params.get("opening_fee_params"))
        size = params.get("payment_size_msat")
        payment_size_msat = None if size is None else lsps0.amount(size, field="payment_size_msat")
        if not promise_holds(self._secret, offered):
            raise lsps0.LspsError(INVALID_OPENING_FEE_PARAMS, "invalid_opening_fee_params")
        valid_until_ms = parse_iso_ms(offered.valid_until, field="valid_until")
        if valid_until_ms <= self._now_ms():
            raise lsps0.LspsError(INVALID_OPENING_FEE_PARAMS, "invalid_opening_fee_params")
        # One sale per (client, promised parameters, size): a retried buy is the same sale.
        request_id = hashlib.sha256(
            f"{offered.promise}\x1f{payment_size_msat}".encode()
        ).hexdigest()[:32]
        command = SellJitChannel(
            region=self._region, node=self._node_name, client_pubkey=peer,
            request_id=request_id, payment_size_msat=payment_size_msat,
            params=FeeParams(
                min_fee_msat=offered.min_fee_msat, proportional=offered.proportional,
                valid_until_ms=valid_until_ms, min_lifetime=offered.min_lifetime,
                max_client_to_self_delay=offered.max_client_to_self_delay,
                min_payment_size_msat=offered.min_payment_size_msat,
                max_payment_size_msat=offered.max_payment_size_msat,
            ),
        )  # fmt: skip
        try:
            reply = await self._sell(command)
        except OutcomeRefused as exc:
            log.warning("lsps2_buy_refused", peer=peer, code=exc.error_code)
            raise lsps0.LspsError(lsps0.CLIENT_REJECTED, "client_rejected") from None
        if reply.state != "sold":
            code, message = _REFUSALS.get(
                reply.reason or "", (lsps0.CLIENT_REJECTED, "client_rejected")
            )
            raise lsps0.LspsError(code, message)
        log.info("lsps2_sold", peer=peer, sale_id=reply.intent_id, duplicate=reply.duplicate)
        return {
            "jit_channel_scid": jit_scid_for(self._node_name, peer, request_id),
            "lsp_cltv_expiry_delta": self._cltv_expiry_delta,
            "client_trusts_lsp": False,
        }

    @staticmethod
    def _parse_params(raw: Any) -> OpeningFeeParams:
        if not isinstance(raw, dict):
            raise lsps0.invalid_params(property="opening_fee_params", message="must be an object")
        if set(raw) != PARAMS_FIELDS:
            # bLIP-52: exactly these fields, copied verbatim; anything else is not ours.
            raise lsps0.LspsError(INVALID_OPENING_FEE_PARAMS, "invalid_opening_fee_params")
        promise = raw["promise"]
        if not isinstance(promise, str) or len(promise) > PROMISE_CHARS_MAX:
            raise lsps0.LspsError(INVALID_OPENING_FEE_PARAMS, "invalid_opening_fee_params")
        valid_until = raw["valid_until"]
        if not isinstance(valid_until, str) or len(valid_until) > DATETIME_CHARS_MAX:
            raise lsps0.invalid_params(property="valid_until", message="must be a datetime")
        return OpeningFeeParams(
            min_fee_msat=lsps0.amount(raw["min_fee_msat"], field="min_fee_msat"),
            proportional=_u32(raw["proportional"], field="proportional"),
            valid_until=valid_until,
            min_lifetime=_u32(raw["min_lifetime"], field="min_lifetime"),
            max_client_to_self_delay=_u32(
                raw["max_client_to_self_delay"], field="max_client_to_self_delay"
            ),
            min_payment_size_msat=lsps0.amount(
                raw["min_payment_size_msat"], field="min_payment_size_msat"
            ),
            max_payment_size_msat=lsps0.amount(
                raw["max_payment_size_msat"], field="max_payment_size_msat"
            ),
            promise=promise,
        )
