"""Whether a rebalance moves funds between OUR nodes only (ADR 0249).

A rebalance is judged by its own tier and fee budget, not by the payment policy (spend
windows, corridors): that is safe only while it pays nothing but a node of ours. So its source
must be a node of its source region, its target a node of its target region, and its
``destination`` (the keysend pubkey, and so the payee an invoice must name) the target's own
pubkey, all as the engine knows them (``OurNodes``: its node table and what each node's
executor reported), never as the request says. A circular move's target is its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from schemas import errors
from schemas.rebalance_messages import RebalanceRejected

# (region, node) -> the node's pubkey, None while no executor of it has reported one.
NodeDirectory = Mapping[tuple[str, str], str | None]
NOT_OUR_NODE: Final = "not_our_node"


class Move(Protocol):
    """The fields judged: a request's, or a recorded rebalance's when it is approved."""

    @property
    def source_region(self) -> str: ...
    @property
    def source_node(self) -> str: ...
    @property
    def target_region(self) -> str: ...
    @property
    def target_node(self) -> str: ...
    @property
    def destination(self) -> str: ...


def not_ours(command: Move, nodes: NodeDirectory) -> RebalanceRejected | None:
    """The refusal of a move that would leave our nodes, naming the field; raises
    ``Unavailable`` when the target is ours but its pubkey is not known yet (retry)."""
    if (command.source_region, command.source_node) not in nodes:
        return _rejected("source_node", f"{command.source_node} is no node of ours in "
                         f"{command.source_region}")  # fmt: skip
    target = (command.target_region, command.target_node)
    if target not in nodes:
        return _rejected("target_node", f"{command.target_node} is no node of ours in "
                         f"{command.target_region}")  # fmt: skip
    pubkey = nodes[target]
    if pubkey is None:
        raise errors.Unavailable(
            f"the pubkey of {command.target_node} is not known yet; retry", field="destination"
        )
    if command.destination != pubkey:
        return _rejected("destination", f"destination is not {command.target_node}'s pubkey")
    return None


def _rejected(field: str, detail: str) -> RebalanceRejected:
    return RebalanceRejected(reason=NOT_OUR_NODE, field=field, detail=detail)


def refusal_error(rejected: RebalanceRejected) -> errors.CorridorError:
    """The structured error a caller gets for a move refused as leaving our nodes."""
    return errors.CorridorError(rejected.detail, field=rejected.field, code=NOT_OUR_NODE)
