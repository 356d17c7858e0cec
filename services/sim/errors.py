"""Typed errors of the simulated network. A caller mistake is a ``SimError``, never an assert."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.sim.records import SimPayment


class SimError(Exception):
    """Root of every error the simulated network raises on purpose."""


class NodeExists(SimError, ValueError):
    """A node added at runtime under a name the network already has."""

    def __init__(self, name: str) -> None:
        super().__init__(f"node {name!r} exists")
        self.name = name


class UnknownNode(SimError, KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown node {name!r}")
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the message again
        return str(self.args[0])


class UnknownChannel(SimError, KeyError):
    def __init__(self, channel_id: str) -> None:
        super().__init__(f"unknown channel {channel_id!r}")
        self.channel_id = channel_id

    def __str__(self) -> str:
        return str(self.args[0])


class TopologyError(SimError, ValueError):
    """The topology file or spec is inconsistent (duplicate names, unknown channel ends...)."""


class NodeOffline(SimError):
    def __init__(self, name: str) -> None:
        super().__init__(f"node {name!r} is offline")
        self.name = name


class PaymentExists(SimError):
    """The origin already has a succeeded or in-flight attempt for this payment hash."""

    def __init__(self, existing: SimPayment) -> None:
        super().__init__(
            f"payment {existing.payment_hash} from {existing.origin} is {existing.status}"
        )
        self.existing = existing


class InvalidPaymentRequest(SimError, ValueError):
    """The caller's payment parameters are unusable (bad invoice, missing/extra amount...).

    ``code`` is a short stable tag the RPC servers map to their own error codes.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvoiceExists(SimError):
    """The payee already holds an invoice with this payment hash (a preimage chosen twice)."""

    def __init__(self, payee: str, payment_hash: str) -> None:
        super().__init__(f"node {payee!r} already has an invoice with hash {payment_hash}")
        self.payment_hash = payment_hash


class InvoiceNotOpen(SimError):
    """A settle or cancel found the invoice in a state that does not allow it."""

    def __init__(self, payment_hash: str, state: str) -> None:
        super().__init__(f"invoice {payment_hash} is {state}")
        self.payment_hash = payment_hash
        self.state = state
