"""``SimNetwork``: the public face of the simulated Lightning network.

A synchronous, clock-driven core (``PaymentEngine`` over ``NetworkState``) plus a small async
layer: a driver task that calls ``run_due`` when the next HTLC is due, and per-payment
subscriptions. A deterministic whole-engine simulation can skip the driver and call
``start_payment`` / ``run_due`` itself with a manual clock (see ADR 0101).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from services.bolt11.codec import decode_invoice
from services.lightning.port import DecodedInvoice
from services.sim.chain import Chain
from services.sim.channel_ops import ChannelOps
from services.sim.custom_messages import CustomMessageHub
from services.sim.errors import NodeOffline, SimError
from services.sim.faults import SimFaults
from services.sim.interception import InterceptAction, SimInterceptedHtlc
from services.sim.ledger import PaymentLedger
from services.sim.payments import PaymentEngine
from services.sim.records import (
    SimChannel,
    SimFundingTx,
    SimInvoice,
    SimNode,
    SimPayment,
    SimPendingChannel,
    SimRouteHint,
    SimWallet,
)
from services.sim.routing import NO_LIMITS, RouteLimits
from services.sim.state import NetworkState
from services.sim.topology import NodeSpec, PolicySpec, Topology

# Default time an HTLC needs to cross one hop. Zero keeps benchmarks and tests fast; the
# driver still resolves asynchronously, so callers observe "in flight" first either way.
HOP_DELAY_S_DEFAULT = 0.0
# Blocks one mine call may add: a day of blocks at the simulated one per second is plenty,
# and a bigger number is a typo that would spin the process.
MINE_BLOCKS_MAX = 100_000


class UnknownPayment(SimError, KeyError):
    def __init__(self, origin: str, payment_hash: str) -> None:
        super().__init__(f"node {origin!r} has no payment {payment_hash}")

    def __str__(self) -> str:
        return str(self.args[0])


class SimNetwork:
    def __init__(
        self, state: NetworkState, *, now_s: Callable[[], float], hop_delay_s: float
    ) -> None:
        self._state = state
        self._now_s = now_s
        self._ledger = PaymentLedger()
        self._engine = PaymentEngine(
            state,
            self._ledger,
            now_s=now_s,
            hop_delay_s=hop_delay_s,
            on_update=self._updated,
            on_schedule=self._kick,
        )
        self._ops = ChannelOps(state, state.chain)
        self._custom_messages = CustomMessageHub(state)
        self._wallet_lsps: dict[str, str] = {}
        # Set (and dropped) at each new block: waiters for confirmations take a fresh one.
        self._block_events: set[asyncio.Event] = set()
        self._watchers: dict[tuple[str, str], set[asyncio.Queue[SimPayment]]] = {}
        self._invoice_watchers: dict[str, set[asyncio.Queue[SimInvoice]]] = {}
        state.invoices.on_change = self._invoice_changed
        self._wake: asyncio.Event | None = None
        self._driver: asyncio.Task[None] | None = None

    @classmethod
    def from_topology(
        cls,
        topology: Topology,
        *,
        seed: int,
        now_s: Callable[[], float] = time.time,
        hop_delay_s: float = HOP_DELAY_S_DEFAULT,
    ) -> SimNetwork:
        return cls(
            NetworkState(topology, seed=seed, now_s=now_s), now_s=now_s, hop_delay_s=hop_delay_s
        )

    # Nodes and chain.

    @property
    def nodes(self) -> Mapping[str, SimNode]:
        return MappingProxyType(self._state.nodes)

    @property
    def block_height(self) -> int:
        return self._state.block_height

    @property
    def network(self) -> str:
        return self._state.network

    @property
    def seed(self) -> int:
        return self._state.seed

    @property
    def faults(self) -> SimFaults:
        return self._engine.faults

    def now_s(self) -> float:
        return self._now_s()

    def node(self, name: str) -> SimNode:
        return self._state.node(name)

    def add_node(self, spec: NodeSpec) -> SimNode:
        """Add a node to the running network, with no channels (ADR 0271)."""
        return self._state.add_node(spec)

    def node_by_pubkey(self, pubkey: str) -> SimNode:
        return self._state.node_by_pubkey(pubkey)

    def is_online(self, name: str) -> bool:
        self._state.node(name)
        return self._state.is_online(name)

    def add_node_listener(self, listener: Callable[[str, bool], None]) -> None:
        """Call ``listener(name, online)`` whenever a node goes offline or comes back."""
        self._engine.node_listeners.append(listener)

    def remove_node_listener(self, listener: Callable[[str, bool], None]) -> None:
        with contextlib.suppress(ValueError):
            self._engine.node_listeners.remove(listener)

    def channels_of(self, node: str) -> list[SimChannel]:
        return self._state.channels_of(node)

    def unsettled_htlcs_msat(self, node: str) -> tuple[int, int]:
        """(outgoing, incoming) msat in HTLCs on ``node``'s channels."""
        outgoing = incoming = 0
        for channel in self._state.channels_by_node[self._state.node(node).name]:
            for htlc in channel.htlcs.values():
                if htlc.sender == node:
                    outgoing += htlc.amount_msat
                else:
                    incoming += htlc.amount_msat
        return outgoing, incoming

    def channel(self, channel_id: str, *, side: str) -> SimChannel:
        return self._state.channel_view(self._state.channel(channel_id), side)

    def channel_ids(self) -> list[str]:
        return sorted(self._state.channels)

    @property
    def custom_messages(self) -> CustomMessageHub:
        """Custom peer messages between the nodes (LSPS0's transport, ADR 0250)."""
        return self._custom_messages

    # Chain, wallets and channel operations (channel_ops.py, ADR 0230).

    @property
    def chain(self) -> Chain:
        """The chain itself, for read-only use by the node servers' views."""
        return self._state.chain

    def mine(self, blocks: int = 1) -> int:
        """Mine ``blocks`` blocks (each holds the whole mempool); the new tip height."""
        if not 1 <= blocks <= MINE_BLOCKS_MAX:
            raise ValueError(f"blocks must be within [1, {MINE_BLOCKS_MAX}]")
        for _ in range(blocks):
            self._state.chain.mine(self._now_s())
            self._ops.on_block()
            self._engine.auto_fail_intercepted(self._state.chain.height)
        events, self._block_events = self._block_events, set()
        for event in events:
            event.set()
        return self._state.chain.height

    def next_block(self) -> asyncio.Event:
        """An event set when the next block (or batch of blocks) is mined."""
        event = asyncio.Event()
        self._block_events.add(event)
        return event

    def open_channel(
        self,
        opener: str,
        peer: str,
        *,
        amount_sat: int,
        sat_per_vbyte: int,
        push_msat: int = 0,
        memo: str = "",
        policy: PolicySpec | None = None,
        zero_conf: bool = False,
        private: bool = False,
    ) -> SimFundingTx:
        """Broadcast a funding transaction to ``peer`` (a name or pubkey); the channel is
        pending until mined deep enough (usable at once under an alias with ``zero_conf``).
        Raises ``ChannelRefused`` or ``NodeOffline``."""
        self._state.node(opener)
        funding = self._ops.open(
            opener,
            peer,
            amount_sat=amount_sat,
            push_msat=push_msat,
            sat_per_vbyte=sat_per_vbyte,
            memo=memo,
            policy=policy,
            zero_conf=zero_conf,
            private=private,
        )
        self._kick()
        return funding

    def close_channel(self, node: str, channel_ref: str, *, sat_per_vbyte: int) -> str:
        """Cooperatively close; the closing txid. Raises ``ChannelRefused`` or ``NodeOffline``."""
        self._state.node(node)
        return self._ops.close(node, channel_ref, sat_per_vbyte=sat_per_vbyte)

    def pending_channels_of(self, node: str) -> list[SimPendingChannel]:
        self._state.node(node)
        return self._ops.pending_of(node)

    def wallet_of(self, node: str) -> SimWallet:
        self._state.node(node)
        return self._ops.wallet_of(node)

    # Wallets' LSPs (lsps2_wallet.py): a payee wallet without inbound buys a JIT channel.

    def set_wallet_lsp(self, wallet: str, lsp: str | None) -> None:
        self._state.node(wallet)
        if lsp is None:
            self._wallet_lsps.pop(wallet, None)
            return
        self._state.node(lsp)
        self._wallet_lsps[wallet] = lsp

    def wallet_lsp(self, wallet: str) -> str | None:
        return self._wallet_lsps.get(wallet)

    # HTLC interception (interception.py, ADR 0260).

    def enable_interception(self, node: str) -> None:
        """Hold HTLCs for unknown next channels at ``node`` from now on (lnd's
        ``requireinterceptor``, a CLN ``htlc_accepted`` plugin)."""
        self._state.node(node)
        self._engine.intercepts.enabled.add(node)

    def interception_enabled(self, node: str) -> bool:
        self._state.node(node)
        return node in self._engine.intercepts.enabled

    def intercepted_htlcs(self, node: str) -> list[SimInterceptedHtlc]:
        """The HTLCs ``node`` holds for its interception client, oldest first."""
        self._state.node(node)
        return self._engine.intercepts.held_at(node)

    @contextlib.contextmanager
    def watch_interceptions(self, node: str) -> Iterator[asyncio.Queue[SimInterceptedHtlc]]:
        """A queue that receives each HTLC ``node`` newly holds, while the context is open."""
        self._state.node(node)
        # Unbounded as the other watchers: the node holds at most HELD_HTLCS_MAX.
        queue: asyncio.Queue[SimInterceptedHtlc] = asyncio.Queue()

        def listener(htlc: SimInterceptedHtlc) -> None:
            if htlc.node == node:
                queue.put_nowait(htlc)

        self._engine.intercepts.listeners.append(listener)
        try:
            yield queue
        finally:
            self._engine.intercepts.listeners.remove(listener)

    def resolve_intercepted(
        self,
        node: str,
        circuit_key: tuple[str, int],
        action: InterceptAction,
        *,
        preimage: str | None = None,
        out_amount_msat: int = 0,
        out_wire_custom_records: dict[int, bytes] | None = None,
    ) -> None:
        """Settle, fail or resume a held HTLC; raises ``InterceptError``."""
        self._state.node(node)
        self._engine.resolve_intercepted(
            node,
            circuit_key,
            action,
            preimage=preimage,
            out_amount_msat=out_amount_msat,
            out_wire_custom_records=out_wire_custom_records,
        )
        self._kick()

    # Invoices.

    def create_invoice(
        self,
        node: str,
        amount_msat: int | None,
        memo: str,
        expiry_s: int,
        *,
        preimage: str | None = None,
        route_hint: SimRouteHint | None = None,
        jit_fee_max_msat: int = 0,
    ) -> SimInvoice:
        """A new invoice of ``node``; ``preimage`` (hex) is the caller's choice when given.
        ``route_hint`` and ``jit_fee_max_msat`` make it an LSPS2 invoice (bLIP-52 section 3).

        Raises ``InvoiceExists`` if ``node`` already has an invoice for that preimage's hash,
        ``ValueError`` for bad arguments, ``NodeOffline``.
        """
        payee = self._state.node(node)
        if not self._state.is_online(node):
            raise NodeOffline(node)
        return self._state.invoices.create(
            payee=node,
            payee_pubkey=payee.pubkey,
            privkey=payee.privkey,
            amount_msat=amount_msat,
            memo=memo,
            expiry_s=expiry_s,
            preimage=preimage,
            route_hint=route_hint,
            jit_fee_max_msat=jit_fee_max_msat,
        )

    def create_hold_invoice(
        self, node: str, payment_hash: str, amount_msat: int | None, memo: str, expiry_s: int
    ) -> SimInvoice:
        """A hold invoice (LND AddHoldInvoice): a payment's HTLC is held at ``node`` (the
        invoice ``accepted``) until ``settle_invoice`` or ``cancel_invoice``."""
        payee = self._state.node(node)
        if not self._state.is_online(node):
            raise NodeOffline(node)
        return self._state.invoices.create(
            payee=node,
            payee_pubkey=payee.pubkey,
            privkey=payee.privkey,
            amount_msat=amount_msat,
            memo=memo,
            expiry_s=expiry_s,
            hold_hash=payment_hash,
        )

    def settle_invoice(self, node: str, preimage: str) -> None:
        """Settle ``node``'s accepted hold invoice for ``preimage``; raises ``KeyError`` if it
        has none, ``InvoiceNotOpen`` unless the invoice is accepted."""
        self._state.node(node)
        self._engine.settle_held(node, preimage)

    def cancel_invoice(self, node: str, payment_hash: str) -> None:
        """Cancel ``node``'s open or accepted invoice (a held HTLC fails back); raises
        ``KeyError`` for an unknown hash, ``InvoiceNotOpen`` for a settled invoice."""
        self._state.node(node)
        self._engine.cancel_invoice(node, payment_hash)

    def lookup_invoice(self, node: str, payment_hash: str) -> SimInvoice | None:
        self._state.node(node)
        return self._state.invoices.lookup(node, payment_hash)

    def invoices_of(self, node: str) -> list[SimInvoice]:
        self._state.node(node)
        return sorted(self._state.invoices.of_payee(node), key=lambda i: i.add_index)

    def settled_invoices(self, node: str, *, after_pay_index: int = 0) -> list[SimInvoice]:
        """``node``'s settled invoices with a pay index above ``after_pay_index``, in order."""
        self._state.node(node)
        return self._state.invoices.settled_after(node, after_pay_index)

    async def subscribe_invoices(
        self, node: str, *, after_pay_index: int
    ) -> AsyncGenerator[SimInvoice, None]:
        """Yield ``node``'s invoices settled after ``after_pay_index`` in pay order, then each
        one settled later, as it settles. Never ends on its own."""
        async with self.watch_invoices(node) as queue:
            last = after_pay_index
            # Registered before the backlog is read, so nothing settles unseen in between.
            for record in self._state.invoices.settled_after(node, last):
                last = record.pay_index
                yield record
            while True:
                record = await queue.get()
                if record.state != "settled" or record.pay_index <= last:
                    continue  # not a settlement, or already yielded from the backlog
                last = record.pay_index
                yield record

    @contextlib.asynccontextmanager
    async def watch_invoices(self, node: str) -> AsyncIterator[asyncio.Queue[SimInvoice]]:
        """A queue that receives each of ``node``'s invoices as it is added or changes state,
        while the context is open. Waiting on it with a timeout is safe (unlike a generator,
        which a cancelled read closes)."""
        self._state.node(node)
        # Unbounded, as the payment watchers: one entry per invoice change of one node, and
        # the reader is a stream that drains it as fast as the changes come.
        queue: asyncio.Queue[SimInvoice] = asyncio.Queue()
        self._invoice_watchers.setdefault(node, set()).add(queue)
        try:
            yield queue
        finally:
            watchers = self._invoice_watchers.get(node)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._invoice_watchers[node]

    def decode(self, payment_request: str) -> DecodedInvoice:
        """Decode a BOLT 11 string; raises ``InvoiceDecodeError``."""
        return self._state.invoices.decoded(payment_request) or decode_invoice(payment_request)

    # Payments.

    def start_payment(
        self,
        origin: str,
        *,
        payment_request: str | None = None,
        destination: str | None = None,
        amount_msat: int | None = None,
        payment_hash: str | None = None,
        preimage: str | None = None,
        max_fee_msat: int,
        limits: RouteLimits = NO_LIMITS,
    ) -> SimPayment:
        """Synchronous ``send_payment`` for clock-stepped simulations (no driver involved)."""
        return self._engine.start(
            origin,
            payment_request=payment_request,
            destination=destination,
            amount_msat=amount_msat,
            payment_hash=payment_hash,
            preimage=preimage,
            max_fee_msat=max_fee_msat,
            limits=limits,
        )

    async def send_payment(
        self,
        origin: str,
        *,
        payment_request: str | None = None,
        destination: str | None = None,
        amount_msat: int | None = None,
        payment_hash: str | None = None,
        preimage: str | None = None,
        max_fee_msat: int,
        timeout_s: float,
        limits: RouteLimits = NO_LIMITS,
    ) -> SimPayment:
        """Start an attempt and return its record (often still in flight).

        Raises ``PaymentExists`` if ``origin`` has a succeeded or in-flight attempt for the hash,
        ``NodeOffline`` if ``origin`` is offline, ``InvalidPaymentRequest`` for bad parameters.
        ``timeout_s`` bounds pathfinding, which is instantaneous here; an HTLC once locked stays
        in flight until it resolves, as with LND's ``timeout_seconds``.
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._ensure_driver()
        return self.start_payment(
            origin,
            payment_request=payment_request,
            destination=destination,
            amount_msat=amount_msat,
            payment_hash=payment_hash,
            preimage=preimage,
            max_fee_msat=max_fee_msat,
            limits=limits,
        )

    async def wait_payment(self, origin: str, payment_hash: str, timeout_s: float) -> SimPayment:
        """The record once final, or as it stands (in flight) when ``timeout_s`` runs out."""
        current = self.get_payment(origin, payment_hash)
        if current is None:
            raise UnknownPayment(origin, payment_hash)
        if current.is_final:
            return current
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for update in self.subscribe_payment(origin, payment_hash):
                    if update.is_final:
                        return update
        latest = self.get_payment(origin, payment_hash)
        assert latest is not None
        return latest

    def get_payment(self, origin: str, payment_hash: str) -> SimPayment | None:
        """``origin``'s current attempt for the hash (the latest one)."""
        self._state.node(origin)
        return self._ledger.latest(origin, payment_hash)

    def payments_of(self, origin: str, payment_hash: str | None = None) -> list[SimPayment]:
        """Every attempt ``origin`` made, oldest first (what CLN's ``listsendpays`` shows)."""
        self._state.node(origin)
        return self._ledger.attempts_of(origin, payment_hash)

    def payments(self) -> list[SimPayment]:
        """Ground truth: every attempt the network saw, in start order."""
        return self._ledger.all()

    async def subscribe_payment(
        self, origin: str, payment_hash: str
    ) -> AsyncGenerator[SimPayment, None]:
        """Yield the current record and each change after it; end at the first final state."""
        self._ensure_driver()
        key = (origin, payment_hash)
        # One attempt changes state at most twice, so the queue stays tiny.
        queue: asyncio.Queue[SimPayment] = asyncio.Queue()
        self._watchers.setdefault(key, set()).add(queue)
        try:
            current = self._ledger.latest(origin, payment_hash)
            if current is not None:
                yield current
                if current.is_final:
                    return
            while True:
                update = await queue.get()
                if current is not None and (
                    update.attempt_id < current.attempt_id or update == current
                ):
                    continue
                current = update
                yield update
                if update.is_final:
                    return
        finally:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[key]

    # Clock stepping and invariants.

    def run_due(self) -> int:
        """Resolve every HTLC due by ``now_s()``; returns how many payments became final."""
        return self._engine.run_due()

    def next_due_s(self) -> float | None:
        return self._engine.next_due_s()

    def in_flight_count(self) -> int:
        return self._engine.in_flight_count()

    def check_invariants(self) -> None:
        """Assert value conservation per channel, bounds, fee limits and single settlement."""
        for channel in self._state.channels.values():
            channel.check()
        self._ops.check()
        self._ledger.check()
        in_flight = [p for p in self._ledger.all() if p.status == "in_flight"]
        assert len(in_flight) == self._engine.in_flight_count(), "ledger and HTLCs disagree"

    async def aclose(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None

    # Internals.

    def _updated(self, payment: SimPayment) -> None:
        for queue in self._watchers.get((payment.origin, payment.payment_hash), ()):
            queue.put_nowait(payment)
        self._kick()

    def _invoice_changed(self, record: SimInvoice) -> None:
        for queue in self._invoice_watchers.get(record.payee, ()):
            queue.put_nowait(record)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _ensure_driver(self) -> None:
        loop = asyncio.get_running_loop()
        if self._driver is None or self._driver.done() or self._driver.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._driver = loop.create_task(self._drive(), name="sim-network-driver")

    async def _drive(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            wake.clear()
            self._engine.run_due()
            due_s = self._engine.next_due_s()
            if due_s is None:
                await wake.wait()
                continue
            delay_s = due_s - self._now_s()
            if delay_s <= 0:
                await asyncio.sleep(0)  # let RPC handlers run between batches
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_s):  # not wait_for: it can swallow a cancel
                    await wake.wait()


class InvoiceWait(msgspec.Struct, frozen=True):
    """What ``wait_for_change`` saw: the change taken (None if none came in time), and whether
    the node went offline first."""

    change: SimInvoice | None
    offline: bool = False


async def wait_for_change(
    changes: asyncio.Queue[SimInvoice], offline: asyncio.Event | None, wait_s: float | None
) -> InvoiceWait:
    """Take the next entry of ``changes`` (a ``watch_invoices`` queue), waiting at most
    ``wait_s`` (None: without bound), unless ``offline`` is set first."""
    if offline is not None and offline.is_set():
        return InvoiceWait(None, offline=True)
    got: asyncio.Task[SimInvoice] = asyncio.ensure_future(changes.get())
    waits: set[asyncio.Future[Any]] = {got}
    went_offline: asyncio.Future[Any] | None = None
    if offline is not None:
        went_offline = asyncio.ensure_future(offline.wait())
        waits.add(went_offline)
    try:
        await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.wait(waits)
    change = got.result() if got.done() and not got.cancelled() else None
    is_offline = went_offline is not None and went_offline.done() and not went_offline.cancelled()
    # A change that arrived with the outage still counts, as for payment streams.
    return InvoiceWait(change, offline=is_offline and change is None)
