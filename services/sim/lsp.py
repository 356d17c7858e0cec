"""An external LSP in the simulated network: the LSPS1 server side (bLIP-51), over LSPS0.

Written from the bLIP text. ``lsps1.get_info`` answers ``LspOptions``; ``lsps1.create_order``
validates the request (-32602 with ``property`` for a bad field, 100 with the ``get_info``
option it breaks, 102 for a token it does not know, 001 for a client it refuses) and answers
the order with one payment option, ``bolt11``: a hold invoice of this node for
``order_total_sat`` that expires with the order. ``lsps1.get_order`` answers it again (101
for an id this client does not own).

When the invoice's HTLC arrives and is held (payment ``HOLD``) the LSP opens the channel to
the client on the simulated chain, ``lsp_balance_sat`` on its side and ``client_balance_sat``
pushed, then settles the invoice (``PAID``, order ``COMPLETED``, ``channel`` set: the funding
transaction is published). If the open fails, or the payment arrives after the order expired,
the HTLC fails back (``REFUNDED``, order ``FAILED``). An unpaid order past its expiry is
``FAILED`` with its invoice cancelled (``REFUNDED``: bLIP-51 says to use it for a cancelled
invoice), evaluated whenever the order is read and on each invoice change, so a manual clock
decides it without a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from services.lsps import lsps0
from services.lsps.server import LspsDispatcher, Method
from services.sim.channel_ops import ChannelRefused
from services.sim.errors import InvoiceNotOpen, NodeOffline, SimError
from services.sim.keys import derive_bytes
from services.sim.network import SimNetwork

log = structlog.get_logger(__name__)

# bLIP-51 error codes (LSPS1's range 100-199, and LSPS0's "client rejected").
OPTION_MISMATCH: Final = 100
ORDER_NOT_FOUND: Final = 101
BAD_TOKEN: Final = 102
ORDER_ID_CHARS_MAX: Final = 64
TOKEN_CHARS_MAX: Final = 512
ADDRESS_CHARS_MAX: Final = 128
# Orders one LSP holds: a simulation that needs more has a loop that orders without end.
ORDERS_MAX: Final = 10_000
ORDER_EXPIRY_S_DEFAULT: Final = 3600
OPEN_FEERATE_SAT_PER_VBYTE: Final = 2
BLOCK_S: Final = 600  # for a lease's expires_at: ten minutes a block, as the chain's target
UINT16_MAX: Final = 0xFFFF
UINT32_MAX: Final = 0xFFFF_FFFF

CREATE_PARAMS: Final = frozenset(
    {
        "lsp_balance_sat",
        "client_balance_sat",
        "required_channel_confirmations",
        "funding_confirms_within_blocks",
        "channel_expiry_blocks",
        "token",
        "refund_onchain_address",
        "announce_channel",
    }
)


@dataclass(frozen=True)
class LspOptions:
    """What ``lsps1.get_info`` answers, and the fee the LSP charges."""

    min_required_channel_confirmations: int = 0
    min_funding_confirms_within_blocks: int = 6
    supports_zero_channel_reserve: bool = True
    max_channel_expiry_blocks: int = 20_160
    min_initial_client_balance_sat: int = 0
    max_initial_client_balance_sat: int = 100_000_000
    min_initial_lsp_balance_sat: int = 100_000
    max_initial_lsp_balance_sat: int = 10_000_000
    min_channel_balance_sat: int = 100_000
    max_channel_balance_sat: int = 16_777_215  # no option_support_large_channel asked
    fee_base_sat: int = 1_000
    fee_ppm: int = 2_000  # of the channel's size

    def info(self) -> dict[str, Any]:
        sat = lsps0.amount_str
        return {
            "min_required_channel_confirmations": self.min_required_channel_confirmations,
            "min_funding_confirms_within_blocks": self.min_funding_confirms_within_blocks,
            "supports_zero_channel_reserve": self.supports_zero_channel_reserve,
            "max_channel_expiry_blocks": self.max_channel_expiry_blocks,
            "min_initial_client_balance_sat": sat(self.min_initial_client_balance_sat),
            "max_initial_client_balance_sat": sat(self.max_initial_client_balance_sat),
            "min_initial_lsp_balance_sat": sat(self.min_initial_lsp_balance_sat),
            "max_initial_lsp_balance_sat": sat(self.max_initial_lsp_balance_sat),
            "min_channel_balance_sat": sat(self.min_channel_balance_sat),
            "max_channel_balance_sat": sat(self.max_channel_balance_sat),
        }

    def fee_sat(self, channel_sat: int) -> int:
        return self.fee_base_sat + -(-channel_sat * self.fee_ppm // 1_000_000)


@dataclass
class _Order:
    order_id: str
    client: str  # pubkey
    request: dict[str, Any]
    lsp_balance_sat: int
    client_balance_sat: int
    created_at_s: float
    expires_at_s: float
    fee_total_sat: int
    invoice: str
    payment_hash: str
    preimage: str
    order_state: str = "CREATED"
    payment_state: str = "EXPECT_PAYMENT"
    channel: dict[str, Any] | None = None
    history: list[str] = field(default_factory=list)


class SimLsp:
    def __init__(
        self,
        network: SimNetwork,
        node: str,
        *,
        options: LspOptions | None = None,
        order_expiry_s: int = ORDER_EXPIRY_S_DEFAULT,
        tokens: frozenset[str] = frozenset(),
        rejected_clients: frozenset[str] = frozenset(),
    ) -> None:
        assert order_expiry_s > 0
        self._network = network
        self._node = network.node(node)
        self.options = options or LspOptions()
        self._expiry_s = order_expiry_s
        self._tokens = tokens
        self._rejected = rejected_clients
        self.orders: dict[str, _Order] = {}
        self._by_hash: dict[str, _Order] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self.dispatcher = LspsDispatcher(
            {
                "lsps1.get_info": Method(self._get_info, frozenset()),
                "lsps1.create_order": Method(self._create_order, CREATE_PARAMS),
                "lsps1.get_order": Method(self._get_order, frozenset({"order_id"})),
            }
        )

    @property
    def pubkey(self) -> str:
        return self._node.pubkey

    async def start(self) -> None:
        """Listen for requests and payments; returns once both are being watched."""
        loop = asyncio.get_running_loop()
        requests_ready, invoices_ready = asyncio.Event(), asyncio.Event()
        self._tasks = [
            loop.create_task(self._serve(requests_ready), name=f"sim-lsp-{self._node.name}"),
            loop.create_task(self._follow(invoices_ready), name=f"sim-lsp-pay-{self._node.name}"),
        ]
        await requests_ready.wait()
        await invoices_ready.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # LSPS0 transport: requests in, answers out, through the network's message hub.

    async def _serve(self, ready: asyncio.Event) -> None:
        hub = self._network.custom_messages
        async with hub.watch(self._node.name) as inbox:
            ready.set()
            while True:
                message = await inbox.get()
                if message.message_type != lsps0.LSPS0_MESSAGE_TYPE:
                    continue
                answer = await self.dispatcher.handle(message.sender_pubkey, message.data)
                with contextlib.suppress(SimError):  # the client went away: bLIP-50 lets it be
                    hub.send(
                        self._node.name, message.sender_pubkey, lsps0.LSPS0_MESSAGE_TYPE, answer
                    )

    async def _follow(self, ready: asyncio.Event) -> None:
        async with self._network.watch_invoices(self._node.name) as changes:
            ready.set()
            while True:
                record = await changes.get()
                order = self._by_hash.get(record.payment_hash)
                if order is not None and record.state == "accepted":
                    self._on_held(order)

    # LSPS1 methods.

    async def _get_info(self, peer: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.options.info()

    async def _create_order(self, peer: str, params: dict[str, Any]) -> dict[str, Any]:
        if peer in self._rejected:
            raise lsps0.LspsError(
                lsps0.CLIENT_REJECTED, "Client rejected", {"message": "not served"}
            )
        lsp_sat = lsps0.amount(_required(params, "lsp_balance_sat"), field="lsp_balance_sat")
        client_sat = lsps0.amount(
            _required(params, "client_balance_sat"), field="client_balance_sat"
        )
        confirmations = _uint(params, "required_channel_confirmations", UINT16_MAX)
        within = _uint(params, "funding_confirms_within_blocks", UINT16_MAX)
        expiry_blocks = _uint(params, "channel_expiry_blocks", UINT32_MAX)
        announce = _required(params, "announce_channel")
        if not isinstance(announce, bool):
            raise lsps0.invalid_params(property="announce_channel", message="Not a boolean")
        token = params.get("token", "")
        if not isinstance(token, str) or len(token) > TOKEN_CHARS_MAX:
            raise lsps0.invalid_params(property="token", message="Not a string")
        refund = params.get("refund_onchain_address")
        if refund is not None and (not isinstance(refund, str) or len(refund) > ADDRESS_CHARS_MAX):
            raise lsps0.invalid_params(property="refund_onchain_address", message="Not an address")
        if lsp_sat < 1:
            raise lsps0.invalid_params(property="lsp_balance_sat", message="Must be 1 or greater")
        if expiry_blocks < 1:
            raise lsps0.invalid_params(
                property="channel_expiry_blocks", message="Must be 1 or greater"
            )
        self._check_options(lsp_sat, client_sat, confirmations, within, expiry_blocks)
        if token and token not in self._tokens:
            raise lsps0.LspsError(BAD_TOKEN, "Unrecognized or stale token", {})
        if len(self.orders) >= ORDERS_MAX:
            raise lsps0.LspsError(lsps0.INTERNAL_ERROR, "Internal error")
        return self._view(self._new_order(peer, params, lsp_sat, client_sat, token))

    async def _get_order(self, peer: str, params: dict[str, Any]) -> dict[str, Any]:
        order_id = _required(params, "order_id")
        if not isinstance(order_id, str) or len(order_id) > ORDER_ID_CHARS_MAX:
            raise lsps0.invalid_params(property="order_id", message="Not an order id")
        order = self.orders.get(order_id)
        if order is None or order.client != peer:
            raise lsps0.LspsError(ORDER_NOT_FOUND, "Not found", {})
        self._expire_if_due(order)
        return self._view(order)

    # Orders.

    def _check_options(
        self, lsp_sat: int, client_sat: int, confirmations: int, within: int, expiry: int
    ) -> None:
        o = self.options
        checks = (
            (lsp_sat < o.min_initial_lsp_balance_sat, "min_initial_lsp_balance_sat"),
            (lsp_sat > o.max_initial_lsp_balance_sat, "max_initial_lsp_balance_sat"),
            (client_sat < o.min_initial_client_balance_sat, "min_initial_client_balance_sat"),
            (client_sat > o.max_initial_client_balance_sat, "max_initial_client_balance_sat"),
            (
                confirmations < o.min_required_channel_confirmations,
                "min_required_channel_confirmations",
            ),
            (within < o.min_funding_confirms_within_blocks, "min_funding_confirms_within_blocks"),
            (expiry > o.max_channel_expiry_blocks, "max_channel_expiry_blocks"),
            (lsp_sat + client_sat < o.min_channel_balance_sat, "min_channel_balance_sat"),
            (lsp_sat + client_sat > o.max_channel_balance_sat, "max_channel_balance_sat"),
        )
        for broken, option in checks:
            if broken:
                raise lsps0.LspsError(
                    OPTION_MISMATCH,
                    "Option mismatch",
                    {"property": option, "message": f"the order is outside {option}"},
                )

    def _new_order(
        self, peer: str, params: dict[str, Any], lsp_sat: int, client_sat: int, token: str
    ) -> _Order:
        number = len(self.orders) + 1
        seed = self._network.seed
        order_id = _uuid4(derive_bytes(seed, "lsps1-order", self._node.name, number))
        preimage = derive_bytes(seed, "lsps1-preimage", self._node.name, number).hex()
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        fee_sat = self.options.fee_sat(lsp_sat + client_sat)
        now_s = self._network.now_s()
        invoice = self._network.create_hold_invoice(
            self._node.name,
            payment_hash,
            (fee_sat + client_sat) * 1000,
            f"LSPS1 order {order_id}",
            self._expiry_s,
        )
        assert invoice.bolt11 is not None
        order = _Order(
            order_id=order_id,
            client=peer,
            request={**params, "token": token},
            lsp_balance_sat=lsp_sat,
            client_balance_sat=client_sat,
            created_at_s=now_s,
            expires_at_s=invoice.created_at_s + self._expiry_s,
            fee_total_sat=fee_sat,
            invoice=invoice.bolt11,
            payment_hash=payment_hash,
            preimage=preimage,
        )
        self.orders[order_id] = order
        self._by_hash[payment_hash] = order
        log.info("sim_lsp_order_created", lsp=self._node.name, order_id=order_id)
        return order

    def _on_held(self, order: _Order) -> None:
        if order.payment_state != "EXPECT_PAYMENT":
            return
        order.payment_state = "HOLD"
        if self._network.now_s() >= order.expires_at_s:
            self._fail(order, "paid after the order expired")
            return
        try:
            funding = self._network.open_channel(
                self._node.name,
                order.client,
                amount_sat=order.lsp_balance_sat + order.client_balance_sat,
                sat_per_vbyte=OPEN_FEERATE_SAT_PER_VBYTE,
                push_msat=order.client_balance_sat * 1000,
                memo=f"lsps1:{order.order_id}",
            )
        except (ChannelRefused, NodeOffline) as exc:
            self._fail(order, f"channel open failed: {exc}")
            return
        now_s = self._network.now_s()
        order.channel = {
            "funded_at": _iso(now_s),
            "funding_outpoint": f"{funding.txid}:{funding.output_index}",
            "expires_at": _iso(now_s + int(order.request["channel_expiry_blocks"]) * BLOCK_S),
        }
        self._network.settle_invoice(self._node.name, order.preimage)
        order.payment_state = "PAID"
        order.order_state = "COMPLETED"
        log.info("sim_lsp_order_completed", lsp=self._node.name, order_id=order.order_id)

    def _expire_if_due(self, order: _Order) -> None:
        unpaid = order.order_state == "CREATED" and order.payment_state == "EXPECT_PAYMENT"
        if unpaid and self._network.now_s() >= order.expires_at_s:
            self._fail(order, "expired unpaid")

    def _fail(self, order: _Order, reason: str) -> None:
        with contextlib.suppress(InvoiceNotOpen, KeyError):
            self._network.cancel_invoice(self._node.name, order.payment_hash)
        order.payment_state = "REFUNDED"
        order.order_state = "FAILED"
        log.info(
            "sim_lsp_order_failed", lsp=self._node.name, order_id=order.order_id, reason=reason
        )

    def _view(self, order: _Order) -> dict[str, Any]:
        request = order.request
        total_sat = order.fee_total_sat + order.client_balance_sat
        return {
            "order_id": order.order_id,
            "lsp_balance_sat": lsps0.amount_str(order.lsp_balance_sat),
            "client_balance_sat": lsps0.amount_str(order.client_balance_sat),
            "required_channel_confirmations": request["required_channel_confirmations"],
            "funding_confirms_within_blocks": request["funding_confirms_within_blocks"],
            "channel_expiry_blocks": request["channel_expiry_blocks"],
            "token": request["token"],
            "created_at": _iso(order.created_at_s),
            "announce_channel": request["announce_channel"],
            "order_state": order.order_state,
            "payment": {
                "bolt11": {
                    "state": order.payment_state,
                    "expires_at": _iso(order.expires_at_s),
                    "fee_total_sat": lsps0.amount_str(order.fee_total_sat),
                    "order_total_sat": lsps0.amount_str(total_sat),
                    "invoice": order.invoice,
                }
            },
            "channel": order.channel,
        }


def _required(params: dict[str, Any], name: str) -> Any:
    if name not in params:
        raise lsps0.invalid_params(property=name, message="Missing")
    return params[name]


def _uint(params: dict[str, Any], name: str, limit: int) -> int:
    value = _required(params, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise lsps0.invalid_params(property=name, message=f"Not an integer within 0..{limit}")
    return value


def _iso(at_s: float) -> str:
    """LSPS0 datetime: ISO 8601 in UTC with milliseconds, as bLIP-51's examples write it."""
    moment = datetime.datetime.fromtimestamp(at_s, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _uuid4(raw: bytes) -> str:
    b = bytearray(raw[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
