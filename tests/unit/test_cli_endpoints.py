"""``endpoints.json`` is shared: each process adds and removes only its own entries, under a
lock, and replaces the file atomically (ADR 0020)."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path
from typing import Any

import pytest

from services.endpoints import (
    FILE_NAME,
    StackNotFound,
    add_entries,
    find_stack,
    remove_entries,
)

ENGINE = {"nats_url": "nats://127.0.0.1:4222", "database_url": "postgresql://x@h/db", "pid": 7}
SIM = {"nodes": [{"name": "us-lnd", "pubkey": "02" + "ab" * 32}], "sim_control": "/tmp/c.sock"}


def _read(state_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state_dir / FILE_NAME).read_text())
    return data


def test_a_writer_removes_its_own_entries_and_the_other_s_remain(tmp_path: Path) -> None:
    add_entries(tmp_path, ENGINE)
    add_entries(tmp_path, SIM)
    assert _read(tmp_path) == {**ENGINE, **SIM}

    remove_entries(tmp_path, ENGINE)  # `corridor up` stops
    assert _read(tmp_path) == SIM  # the simulator's nodes stay for the next executor

    remove_entries(tmp_path, SIM)
    assert not (tmp_path / FILE_NAME).exists()  # nobody's entries left: no file


def test_an_entry_another_process_rewrote_is_not_removed(tmp_path: Path) -> None:
    add_entries(tmp_path, {"nats_url": "nats://first"})
    add_entries(tmp_path, {"nats_url": "nats://second"})  # a newer stack on the same dir
    remove_entries(tmp_path, {"nats_url": "nats://first"})  # the first one stops late
    assert _read(tmp_path) == {"nats_url": "nats://second"}


def test_removing_from_a_missing_file_is_a_no_op(tmp_path: Path) -> None:
    remove_entries(tmp_path / "nowhere", ENGINE)
    assert not (tmp_path / "nowhere").exists()


def test_the_file_is_private(tmp_path: Path) -> None:
    path = add_entries(tmp_path, ENGINE)  # it holds a database URL, maybe with a password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_find_stack_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    with pytest.raises(StackNotFound, match="corridor up"):
        find_stack(tmp_path)
    add_entries(tmp_path, SIM)  # a simulator alone is not a stack
    with pytest.raises(StackNotFound, match="nats_url"):
        find_stack(tmp_path)
    add_entries(tmp_path, ENGINE)
    assert find_stack(tmp_path).nats_url == ENGINE["nats_url"]


WRITERS = 4
KEYS_PER_WRITER = 60


def _writer(state_dir: str, writer: int, start: Any) -> None:
    """Add keys one read-modify-write at a time, then remove the even ones."""
    start.wait(timeout=30)  # every writer begins together
    mine = {f"w{writer}-k{i}": i for i in range(KEYS_PER_WRITER)}
    for key, value in mine.items():
        add_entries(Path(state_dir), {key: value})
    remove_entries(Path(state_dir), {k: v for k, v in mine.items() if v % 2 == 0})


def test_concurrent_writers_lose_no_entry(tmp_path: Path) -> None:
    add_entries(tmp_path, SIM)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS + 1)
    writers = [
        context.Process(target=_writer, args=(str(tmp_path), w, start)) for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    start.wait(timeout=60)
    # While they write, a reader (who takes no lock) always sees a whole document.
    reads = 0
    while any(p.is_alive() for p in writers):
        assert "sim_control" in _read(tmp_path)
        reads += 1
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    expected = {f"w{w}-k{i}": i for w in range(WRITERS) for i in range(1, KEYS_PER_WRITER, 2)}
    assert _read(tmp_path) == {**SIM, **expected}
    assert reads > 0
