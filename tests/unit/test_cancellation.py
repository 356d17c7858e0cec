"""A task that lost its cancellation still stops (services/cancellation.py)."""

from __future__ import annotations

import asyncio
import contextlib

from services.cancellation import cancel_and_wait, cancel_requested, stop_if_cancelled


async def _swallows_the_first_cancel(ended: asyncio.Event) -> None:
    # What asyncio.wait_for on 3.11 can do when the inner call finishes as the cancel lands.
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    try:
        await asyncio.Event().wait()
    finally:
        ended.set()


async def test_a_task_that_swallowed_a_cancel_is_cancelled_again() -> None:
    # One cancel and a wait are not enough: the task is still running afterwards.
    lost = asyncio.create_task(_swallows_the_first_cancel(asyncio.Event()))
    await asyncio.sleep(0)
    lost.cancel()
    done, _ = await asyncio.wait({lost}, timeout=0.05)
    assert not done
    lost.cancel()
    ended = asyncio.Event()
    task = asyncio.create_task(_swallows_the_first_cancel(ended))
    await asyncio.sleep(0)
    assert await cancel_and_wait([task, lost], recancel_after_s=0.01) == 1
    assert ended.is_set() and task.cancelled()


async def test_well_behaved_tasks_need_one_cancel() -> None:
    tasks = [asyncio.create_task(asyncio.Event().wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert await cancel_and_wait(tasks) == 0
    assert all(t.cancelled() for t in tasks)


async def test_a_retry_loop_sees_a_cancel_it_caught_as_an_error() -> None:
    rounds = 0

    async def retry_loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            # A client library's "connection closed" in place of the cancel.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            stop_if_cancelled()

    task = asyncio.create_task(retry_loop())
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    assert done and task.cancelled() and rounds == 1


async def test_nothing_is_requested_outside_a_cancel() -> None:
    assert not cancel_requested()
    stop_if_cancelled()
