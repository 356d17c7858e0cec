"""Named failpoints (services/failpoints.py, ADR 0081): disarmed they do nothing, armed they
record and kill at exactly the armed hit, and every known name has exactly one call site."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services import failpoints
from services.failpoints import ENV, KNOWN, RECORD_ENV, parse

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
from services.failpoints import failpoint
for i in range(1, 4):
    print(i, flush=True)
    failpoint("executor.after_send")
"""


def _run(tmp_path: Path, spec: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    record = tmp_path / "record"
    env = {**os.environ, ENV: spec, RECORD_ENV: str(record), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    return done, record


def test_disarmed_is_a_no_op() -> None:
    assert ENV not in os.environ
    failpoints.failpoint("executor.after_send")  # returns: this test process lives on


def test_armed_kills_at_the_armed_hit_after_recording_it(tmp_path: Path) -> None:
    done, record = _run(tmp_path, "executor.after_send=kill@2")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2"]  # died at the second hit, not before, not after
    [line] = record.read_text().splitlines()
    name, pid, hit = line.split()
    assert (name, hit) == ("executor.after_send", "2") and int(pid) > 0


def test_another_point_armed_leaves_this_one_alone(tmp_path: Path) -> None:
    done, record = _run(tmp_path, "executor.before_send=kill@1")
    assert done.returncode == 0 and done.stdout.split() == ["1", "2", "3"]
    assert not record.exists()


@pytest.mark.parametrize(
    "spec",
    ["executor.after_sned=kill@1", "executor.after_send=kill", "executor.after_send=kill@0",
     "executor.after_send=sleep@1", "executor.after_send"],
)  # fmt: skip
def test_a_bad_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=ENV):
        parse(spec)


def test_a_bad_spec_stops_the_process_at_start(tmp_path: Path) -> None:
    done, _ = _run(tmp_path, "executor.nowhere=kill@1")
    assert done.returncode == 1 and "unknown failpoint" in done.stderr


def test_parse_reads_several_points() -> None:
    assert parse(" executor.before_send=kill@1 , executor.after_outcome=kill@7,") == {
        "executor.before_send": 1,
        "executor.after_outcome": 7,
    }


def test_every_known_point_has_exactly_one_call_site() -> None:
    sources = "\n".join(
        p.read_text() for p in (REPO / "services").rglob("*.py") if p.name != "failpoints.py"
    )
    for name in KNOWN:
        assert sources.count(f'failpoint("{name}")') == 1, name
