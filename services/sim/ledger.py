"""Ground truth: every payment attempt the network saw, and each origin's record by hash."""

from __future__ import annotations

from services.sim.records import SimPayment


class PaymentLedger:
    def __init__(self) -> None:
        self._by_id: dict[int, SimPayment] = {}
        # The origin's current attempt per hash: what `listpays`/`LookupPayment` report first.
        self._latest: dict[tuple[str, str], int] = {}
        self._by_origin: dict[str, list[int]] = {}
        # Attempts per (origin, hash): lookups must not scan an origin's whole history.
        self._by_origin_hash: dict[tuple[str, str], list[int]] = {}

    def next_id(self) -> int:
        return len(self._by_id) + 1

    def add(self, payment: SimPayment) -> None:
        assert payment.attempt_id == self.next_id(), payment.attempt_id
        existing = self.latest(payment.origin, payment.payment_hash)
        # The property adapters build idempotent pay on.
        assert existing is None or existing.status == "failed", existing
        self._by_id[payment.attempt_id] = payment
        self._latest[(payment.origin, payment.payment_hash)] = payment.attempt_id
        self._by_origin.setdefault(payment.origin, []).append(payment.attempt_id)
        key = (payment.origin, payment.payment_hash)
        self._by_origin_hash.setdefault(key, []).append(payment.attempt_id)

    def update(self, payment: SimPayment) -> None:
        previous = self._by_id[payment.attempt_id]
        assert previous.status == "in_flight", (previous.status, payment.status)
        self._by_id[payment.attempt_id] = payment

    def get(self, attempt_id: int) -> SimPayment:
        return self._by_id[attempt_id]

    def latest(self, origin: str, payment_hash: str) -> SimPayment | None:
        attempt_id = self._latest.get((origin, payment_hash))
        return None if attempt_id is None else self._by_id[attempt_id]

    def attempts_of(self, origin: str, payment_hash: str | None = None) -> list[SimPayment]:
        if payment_hash is not None:
            return [self._by_id[i] for i in self._by_origin_hash.get((origin, payment_hash), ())]
        return [self._by_id[i] for i in self._by_origin.get(origin, ())]

    def all(self) -> list[SimPayment]:
        return list(self._by_id.values())

    def check(self) -> None:
        # A payee settles a hash at most once, and an origin pays a hash at most once. Two
        # payees may each settle one hash when senders reuse a keysend preimage across
        # destinations, as on the real network; invoice hashes are unique per network.
        settled: set[tuple[str, str]] = set()
        paid: set[tuple[str, str]] = set()
        for payment in self._by_id.values():
            assert payment.fee_msat >= 0, payment
            assert payment.fee_msat <= payment.max_fee_msat or payment.status == "failed", payment
            if payment.status == "succeeded":
                settled_key = (payment.destination, payment.payment_hash)
                paid_key = (payment.origin, payment.payment_hash)
                assert settled_key not in settled and paid_key not in paid, settled_key
                settled.add(settled_key)
                paid.add(paid_key)
                assert payment.preimage is not None
            else:
                assert payment.preimage is None, payment
