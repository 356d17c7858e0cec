"""The committed LND stubs are what the generator makes from lnd's own protos (ADR 0113).

The byte-for-byte check needs ``grpcio-tools`` (a dev dependency) and the protos in
``../shared/conformance/lnd/protos``. Without either it skips loudly; with ``CI=true`` it fails
instead, so that a CI run cannot pass without having checked the stubs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NoReturn

import pytest

from services.lightning.lnd_proto import (
    generate,
    invoices_pb2,
    invoices_pb2_grpc,
    lightning_pb2,
    lightning_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)

SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared"
CONFORMANCE_README = SHARED_DIR / "conformance" / "README.md"
PROTOS_DIR = SHARED_DIR / "conformance" / "lnd" / "protos"
COMMITTED = generate.generated_files(generate.PACKAGE_DIR)
REGENERATE = "python -m services.lightning.lnd_proto.generate"


class StubCheckNotRun(UserWarning):
    """The committed stubs were not compared with freshly generated ones."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def _cannot_check(reason: str) -> NoReturn:
    """Fail under CI; elsewhere warn and skip, so the gap shows in the summary."""
    if _in_ci():
        pytest.fail(f"LND stub check cannot run under CI=true: {reason}")
    message = f"LND STUB CHECK NOT RUN: {reason}"
    warnings.warn(message, StubCheckNotRun, stacklevel=2)
    pytest.skip(message)


def _require_protos() -> None:
    if not (PROTOS_DIR / "lightning.proto").is_file():
        _cannot_check(f"lnd protos not found in {PROTOS_DIR}")


def _require_matching_tools() -> str:
    installed = generate.tools_version()
    if installed is None:
        _cannot_check("grpc_tools is not importable; install the dev dependencies (grpcio-tools)")
    recorded = {generate.header_tools_version(path) for path in COMMITTED}
    if recorded != {installed}:
        _cannot_check(
            f"the committed stubs were made with grpcio-tools {sorted(map(str, recorded))}, "
            f"but {installed} is installed; install the locked version, or regenerate with "
            f"`{REGENERATE}` if the lock moved"
        )
    return installed


def test_committed_stubs_are_what_the_generator_makes(tmp_path: Path) -> None:
    _require_protos()
    _require_matching_tools()
    fresh = generate.generate(PROTOS_DIR, tmp_path)
    assert [path.name for path in fresh] == [path.name for path in COMMITTED], (
        f"the set of generated files changed: run `{REGENERATE}`"
    )
    stale = [
        path.name
        for path in fresh
        if path.read_bytes() != (generate.PACKAGE_DIR / path.name).read_bytes()
    ]
    assert not stale, f"{stale} differ from lnd's protos: run `{REGENERATE}` and commit the result"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    _require_protos()
    _require_matching_tools()
    first = {p.name: p.read_bytes() for p in generate.generate(PROTOS_DIR, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in generate.generate(PROTOS_DIR, tmp_path / "b")}
    assert first == second


def test_generator_names_the_commit_in_the_conformance_readme() -> None:
    if not CONFORMANCE_README.is_file():
        _cannot_check(f"{CONFORMANCE_README} not found")
    (lnd_row,) = [
        line
        for line in CONFORMANCE_README.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `lnd/` |")
    ]
    assert generate.LND_COMMIT in lnd_row and generate.LND_DESCRIBE in lnd_row


def test_committed_stubs_name_their_source_and_import_within_the_package() -> None:
    assert COMMITTED, "no generated stubs in services/lightning/lnd_proto"
    for path in COMMITTED:
        head = path.read_text(encoding="utf-8").splitlines()[:8]
        assert any(generate.LND_COMMIT in line for line in head), path.name
        assert generate.header_tools_version(path), path.name
    services = {
        module.DESCRIPTOR.name: sorted(module.DESCRIPTOR.services_by_name)
        for module in (lightning_pb2, router_pb2, invoices_pb2)
    }
    assert services == {
        "lightning.proto": ["Lightning"],
        "routerrpc/router.proto": ["Router"],
        "invoicesrpc/invoices.proto": ["Invoices"],
    }
    assert hasattr(lightning_pb2_grpc, "LightningStub")
    assert hasattr(router_pb2_grpc, "RouterStub")
    assert hasattr(invoices_pb2_grpc, "InvoicesStub")
    # Calls later features need, present at this commit.
    router = router_pb2.DESCRIPTOR.services_by_name["Router"].methods_by_name
    invoices = invoices_pb2.DESCRIPTOR.services_by_name["Invoices"].methods_by_name
    assert {"SendPaymentV2", "TrackPaymentV2", "HtlcInterceptor"} <= set(router)
    assert {"AddHoldInvoice", "SettleInvoice", "CancelInvoice", "LookupInvoiceV2"} <= set(invoices)


def test_imports_of_generated_modules_become_package_relative() -> None:
    local = {"lightning_pb2": "lightning_pb2", "routerrpc.router_pb2": "router_pb2"}
    text = "\n".join(
        [
            "import grpc",
            "from google.protobuf import descriptor as _descriptor",
            "import lightning_pb2 as lightning__pb2",
            "from routerrpc import router_pb2 as routerrpc_dot_router__pb2",
        ]
    )
    assert generate._rewrite_imports(text, local, "x.py").splitlines() == [
        "import grpc",
        "from google.protobuf import descriptor as _descriptor",
        "from . import lightning_pb2 as lightning__pb2",
        "from . import router_pb2 as routerrpc_dot_router__pb2",
    ]
    with pytest.raises(generate.GenerationError, match="cannot rewrite"):
        generate._rewrite_imports("import lightning_pb2", local, "x.py")


def test_two_protos_with_one_module_name_are_refused() -> None:
    with pytest.raises(generate.GenerationError, match="would both become"):
        generate._flat_names(["lightning.proto", "other/lightning.proto"])
