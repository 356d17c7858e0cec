"""`corridor creds add|revoke` offers every role the registry knows: the CLI keeps its own
stdlib-only copy of the list (ADR 0020), so a role added to the registry alone (the reconciler,
ADR 0151) could not be issued by hand for a deployment's reconcilers."""

from __future__ import annotations

from pathlib import Path

from services.cli import creds
from services.identity.registry import ROLES, load_registry, registry_path


def test_the_cli_offers_every_registry_role() -> None:
    assert tuple(creds.ROLES) == tuple(ROLES)


def test_a_reconciler_credential_is_made_for_its_node(tmp_path: Path) -> None:
    from services.cli.main import build_parser

    out = tmp_path / "reconciler-us-lnd.nk"
    argv = ["creds", "add", "--state-dir", str(tmp_path), "--role", "reconciler",
            "--region", "us", "--node", "us-lnd", "--out", str(out)]  # fmt: skip
    args = build_parser(argv).parse_args(argv)
    assert creds.add(args) == 0
    (made,) = load_registry(registry_path(tmp_path)).credentials
    assert (made.role, made.id, made.region, made.node) == ("reconciler", "us-lnd", "us", "us-lnd")
    assert out.exists()
