"""One engine as its own OS process, for tests that run several on one database and one NATS.

``python -m tests.engine_process``: the settings come from the environment as for any engine
(``NATS_URL``, ``DATABASE_URL``, ``CORRIDOR_*``; ``CORRIDOR_CREDS`` names the engine's nkey
seed, ADR 0060), so several processes started with the same environment are several engines
of one deployment. It prints ``ready`` once it takes commands and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from services.bootstrap import bootstrap
from services.logging import configure_logging
from services.settings import Settings


async def _main() -> None:
    settings = Settings()
    engine = await bootstrap(
        settings,
        nats_url=settings.nats_url,
        database_url=settings.database_url.get_secret_value(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await engine.start()
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await engine.stop()


if __name__ == "__main__":
    configure_logging()
    asyncio.run(_main())
    sys.exit(0)
