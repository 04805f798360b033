"""Handing a job to the finalizer never waits for the finalizer's loop.

The trigger runner's loop calls ``submit``; if the hand-off waited until the finalizer's loop
took the job (anyio's ``start_task_soon`` does), a busy finalizer loop would stall every trigger.
Here the finalizer's loop is held blocked on a ``threading.Event`` while a job is submitted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import anyio
import pytest

from finalizer.jobs import OutcomeKind
from finalizer.loop_thread import LoopThread
from finalizer.service import Finalizer
from tests.pipeline.harness import NS, World


async def _block(release: threading.Event, blocked: threading.Event) -> None:
    blocked.set()
    release.wait(60)  # blocks the finalizer's whole loop, as a long synchronous step would


@pytest.mark.anyio
async def test_submit_returns_while_the_finalizers_loop_is_blocked(world: World) -> None:
    spec = world.make_job(xcom='{"n": 7}')
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    finalizer = await anyio.to_thread.run_sync(lambda: Finalizer.launch(world.config, world.wiring()))
    release, blocked = threading.Event(), threading.Event()
    try:
        thread = finalizer._thread
        assert isinstance(thread, LoopThread)
        thread.start_soon(_block, release, blocked)
        assert await anyio.to_thread.run_sync(blocked.wait, 30)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            handed = pool.submit(finalizer.submit_future, spec)
            done, _ = concurrent.futures.wait([handed], timeout=10)
            release.set()
        assert done, "submit_future waited for the blocked finalizer loop"
        outcome = await asyncio.wrap_future(handed.result())
        assert outcome.kind is OutcomeKind.SUCCESS
        assert world.xcom(spec) == {"n": 7}
    finally:
        release.set()
        await finalizer.adrain(2.0)


@pytest.mark.anyio
async def test_a_job_scheduled_as_the_loop_goes_away_fails_instead_of_hanging(world: World) -> None:
    finalizer = await anyio.to_thread.run_sync(lambda: Finalizer.launch(world.config, world.wiring()))
    thread = finalizer._thread
    assert isinstance(thread, LoopThread)
    never = asyncio.Event()

    async def waits() -> None:
        await never.wait()

    future = thread.start_soon(waits)
    await anyio.to_thread.run_sync(thread.stop_now)
    await finalizer.adrain(1.0)
    with pytest.raises(concurrent.futures.CancelledError):
        await anyio.to_thread.run_sync(lambda: future.result(10))
