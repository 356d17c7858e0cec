"""LSP orders: inbound channels bought from an external LSP over LSPS1, a pure aggregate in
the style of ``services/domain/intent`` (ADR 0251)."""

from services.domain.lsp_orders.decide import (
    LspOrderContext,
    LspOrderPolicy,
    Refusal,
    decide,
)
from services.domain.lsp_orders.evolve import evolve, replay
from services.domain.lsp_orders.reconcile import LspOrderException, exceptions
from services.domain.lsp_orders.state import TERMINAL, LspOrder, LspOrderStatus

__all__ = [
    "TERMINAL",
    "LspOrder",
    "LspOrderContext",
    "LspOrderException",
    "LspOrderPolicy",
    "LspOrderStatus",
    "Refusal",
    "decide",
    "evolve",
    "exceptions",
    "replay",
]
