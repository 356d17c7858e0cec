"""An engine that never registers a webhook endpoint never touches its state dir for the
webhook master key: the deterministic simulation runs the production engine with a state dir
that does not exist (and as root, a path made there would land outside the test)."""

from __future__ import annotations

from pathlib import Path

from services.settings import Settings
from services.webhooks.running import engine_book
from services.webhooks.secrets import master_key_path


def test_the_master_key_is_made_only_when_a_secret_is_derived(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    book = engine_book(Settings(state_dir=state_dir))
    assert not state_dir.exists()
    assert book.secrets is not None
    first = book.secrets.secret("wh_1", 0)
    assert master_key_path(state_dir).exists() and first.startswith("whsec_")
    assert engine_book(Settings(state_dir=state_dir)).secrets.secret("wh_1", 0) == first  # type: ignore[union-attr]
