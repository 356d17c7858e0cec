"""The adapter contract against real nodes, when configured; skipped otherwise.

Real CLN: ``CORRIDOR_CLN_RPC=/path/to/lightning-rpc`` (our node) and, for the payment cases,
``CORRIDOR_PAYEE_CLN_RPC`` (a node that issues the invoices). Real LND kinds are registered by
the LND adapter's owner in ``REAL_ENV_FACTORIES``. Cases that need the simulator's fault
controls or ground truth skip themselves here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.lightning.conftest import REAL_ENV_FACTORIES, AdapterEnv
from tests.lightning.test_adapter_contract import *  # noqa: F403  (the same test bodies)
from tests.lightning.test_adapter_contract_receive import *  # noqa: F403

pytestmark = pytest.mark.real_nodes


@pytest.fixture(params=sorted(REAL_ENV_FACTORIES))
async def adapter_env(request: Any, tmp_path: Path) -> AsyncIterator[AdapterEnv]:
    async with REAL_ENV_FACTORIES[request.param](tmp_path) as env:
        yield env
