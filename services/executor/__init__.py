"""Region executors: turn dispatched work orders into payments on one Lightning node.

``Executor`` (in-process, for tests and the demo) and ``corridor executor`` (the CLI) run the
same worker; ``HealthBoard`` reads the node health reports the workers publish.

The names below load on first use, so that `corridor executor --help` (which imports
`services.executor.cli`) does not pull in NATS and the node adapters.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.executor.health import HealthBoard, HealthReport
    from services.executor.limits import ExecutorLimits
    from services.executor.runner import build_executor
    from services.executor.worker import Executor

_HOMES = {
    "HealthBoard": "services.executor.health",
    "HealthReport": "services.executor.health",
    "ExecutorLimits": "services.executor.limits",
    "build_executor": "services.executor.runner",
    "Executor": "services.executor.worker",
}

__all__ = ["Executor", "ExecutorLimits", "HealthBoard", "HealthReport", "build_executor"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
