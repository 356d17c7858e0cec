"""Region executors: turn dispatched work orders into payments on one Lightning node.

``Executor`` (in-process, for tests and the demo) and ``corridor executor`` (the CLI) run the
same worker; ``HealthBoard`` reads the node health reports the workers publish.
"""

from services.executor.health import HealthBoard, HealthReport
from services.executor.limits import ExecutorLimits
from services.executor.runner import build_executor
from services.executor.worker import Executor

__all__ = ["Executor", "ExecutorLimits", "HealthBoard", "HealthReport", "build_executor"]
