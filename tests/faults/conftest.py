"""Real-process fault drills (``make drills``): every test here is marked ``drill``, which the
default run (``make test``) deselects (pyproject ``addopts``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.drill import OBSERVED
from tests.faults.harness import Harness

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.drill)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if OBSERVED:
        terminalreporter.section("drills: what each observed")
        for row in OBSERVED:
            terminalreporter.write_line(json.dumps(row, sort_keys=False))


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A stack of real processes, not started: each drill starts it with its failpoints."""
    stack = Harness(tmp_path / "drill")
    try:
        yield stack
    finally:
        if hasattr(stack, "stack"):
            await stack.stop()
