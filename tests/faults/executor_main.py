"""A region executor in its own process, as the drills run it: ``python -m
tests.faults.executor_main --region R --node NAME --state-dir DIR --creds SEED --ready FILE``.

The real ``Executor`` (``services/executor/``), built by ``build_executor`` as ``corridor
executor`` builds it, with shorter clocks (``DRILL_LIMITS``): a killed worker's orders come
back after ``ack_wait_s``, and a drill should not wait JetStream's production 30 s for each.
``CORRIDOR_FAILPOINTS`` arms this process's failpoints (``services/failpoints.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import Final

from services.executor.limits import ExecutorLimits
from services.executor.runner import build_executor
from services.logging import configure_logging

# Three heartbeats per ack wait, as in production; redelivery backoff capped low so that a
# drill's retried orders come back within seconds.
DRILL_LIMITS: Final = ExecutorLimits(
    ack_wait_s=3.0,
    heartbeat_s=1.0,
    health_interval_s=1.0,
    fetch_wait_s=0.5,
    redelivery_delay_s_max=2.0,
    engine_backoff_s_max=1.0,
    stop_grace_s=2.0,
    pay_grace_s=2.0,
)


async def main(args: argparse.Namespace) -> None:
    configure_logging("info")
    executor = build_executor(
        nats_url=args.nats_url,
        region=args.region,
        node_uri=f"sim://{args.node}",
        state_dir=args.state_dir,
        node_name=args.node,
        limits=DRILL_LIMITS,
        executor_id=f"{args.region}-{args.node}-drill-{os.getpid()}",
        creds=args.creds,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, executor.stop)
    run = asyncio.create_task(executor.run())
    ready = asyncio.create_task(executor.ready.wait())
    await asyncio.wait([run, ready], return_when=asyncio.FIRST_COMPLETED)
    if ready.done():
        # The harness waits for this file to name this process: bound to its consumer.
        args.ready.write_text(f"{os.getpid()}\n")
    try:
        await run
    finally:
        await executor.close_node()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--creds", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    asyncio.run(main(parser.parse_args()))
