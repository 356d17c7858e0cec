"""A drill's report: its checks (each true or false), its figures, and the exit code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from services.cli import exit_codes


@dataclass
class DrillReport:
    drill: str
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    def exit_code(self) -> int:
        return exit_codes.OK if self.passed else exit_codes.VERIFICATION_FAILED

    def to_json(self) -> dict[str, Any]:
        return {
            "drill": self.drill,
            "passed": self.passed,
            "checks": self.checks,
            **self.figures,
            "problems": self.problems,
        }

    def print(self, *, as_json: bool) -> None:
        if as_json:
            print(json.dumps(self.to_json(), indent=2, sort_keys=False))
            return
        print(f"drill {self.drill}: {'PASSED' if self.passed else 'FAILED'}")
        for name, value in self.figures.items():
            print(f"  {name}: {json.dumps(value, sort_keys=False)}")
        for name, ok in self.checks.items():
            print(f"  [{'ok' if ok else 'FAIL'}] {name}")
        for problem in self.problems:
            print(f"  problem: {problem}")
