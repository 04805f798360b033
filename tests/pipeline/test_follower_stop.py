"""Stopping the log follower (``_Logs.close``) never swallows a cancellation aimed at the job.

The job stops its ``logging_interval`` follower when the pod ended without the stream reaching
its end (a timeout, an eviction, ``FOLLOW_GRACE``), and waits for it. A drain that cancels the
job right then must park it: before 5251a39 the wait swallowed the cancellation and the job went
on to stop the sidecar and delete the pod. A stream takes a moment to close once cancelled (its
connection is released); here that moment is held open by an event, so the drain lands in it.
The drain itself, end to end, is in tests/service/test_drain_during_follow.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import pytest

from finalizer.pipeline import _Logs

pytestmark = pytest.mark.anyio


class SlowToStop:
    """A follower that follows for ever and, once cancelled, finishes only on ``release``."""

    def __init__(self, on_stop: type[BaseException] = asyncio.CancelledError) -> None:
        self.started, self.stopping, self.release = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.on_stop = on_stop
        self.task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopping.set()
            await self.release.wait()
            if self.on_stop is asyncio.CancelledError:
                raise
            raise self.on_stop("the stream failed while closing") from None


def by_task(task: asyncio.Task[None], scope: anyio.CancelScope) -> None:
    task.cancel()


def by_scope(task: asyncio.Task[None], scope: anyio.CancelScope) -> None:
    scope.cancel()  # how the drain parks a job (Admission.park)


@pytest.mark.parametrize("cancel", [by_task, by_scope], ids=["task.cancel", "cancel-scope"])
async def test_a_drain_while_the_follower_stops_cancels_the_job(
    cancel: Callable[[asyncio.Task[None], anyio.CancelScope], None],
) -> None:
    follower = SlowToStop()
    await follower.started.wait()
    went_on: list[str] = []
    scope = anyio.CancelScope()

    async def job() -> None:
        with scope:
            await _Logs(tail=False, follower=follower.task).close()
            went_on.append("stop the sidecar, delete the pod")
        if scope.cancelled_caught:
            raise asyncio.CancelledError  # parked: what the service sees of a cancelled job

    task = asyncio.get_running_loop().create_task(job())
    await follower.stopping.wait()  # the job is in close(), waiting for the follower
    cancel(task, scope)
    follower.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert went_on == []
    assert follower.task.cancelled()


async def test_the_followers_own_failure_is_not_the_jobs() -> None:
    """A follower that fails while stopping: close() returns, its error retrieved (not raised)."""
    follower = SlowToStop(on_stop=RuntimeError)
    await follower.started.wait()
    closing = asyncio.get_running_loop().create_task(_Logs(tail=False, follower=follower.task).close())
    await follower.stopping.wait()
    follower.release.set()
    await closing  # does not raise
    assert isinstance(follower.task.exception(), RuntimeError)
