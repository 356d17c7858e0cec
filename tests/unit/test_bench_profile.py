"""The profile summary adds a function's samples across its lines and call sites."""

from __future__ import annotations

from services.bench.profile import summarise

MAIN = "main (services/cli/main.py:10)"
LOOP = "run (uvloop/__init__.py:92)"
FOLDED = f"""\
{MAIN};{LOOP};decide (services/domain/intent/decide.py:40) 6
{MAIN};{LOOP};decide (services/domain/intent/decide.py:41) 2
{MAIN};publish (/x/.venv/lib/python3.11/site-packages/nats/aio/client.py:990) 2
not a sample line
"""


def test_self_and_inclusive_shares_per_function() -> None:
    text = summarise("engine", FOLDED)
    self_part, inclusive_part = text.split("-- inclusive")
    assert text.startswith("== engine: 10 samples")
    assert " 80.0%  decide (services/domain/intent/decide.py)" in self_part
    assert " 20.0%  publish (nats/aio/client.py)" in self_part
    assert "100.0%  main (services/cli/main.py)" in inclusive_part
    assert "main (services/cli/main.py)" not in self_part


def test_an_idle_process_says_so() -> None:
    assert "no samples" in summarise("engine", "")
