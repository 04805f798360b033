"""A drain while ``logging_interval``'s follow stream runs (a triggerer restart): the job parks.

The process-wide finalizer on its own loop, a trigger's channel in this one, the fake cluster and
the real Execution API. A drain is a restart, not a kill: the job must park in the ledger with
its pod and sidecar untouched, the drain must not hang on the follow stream, and what the stream
had written is written once. The next run (the re-run trigger) writes the whole log again, as
the README's "How it differs" section says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from finalizer.exceptions import FinalizerUnavailableError
from finalizer.jobs import JobSpec, Outcome, OutcomeKind, Step
from finalizer.log_channel import LogChannel, open_channel
from finalizer.pipeline import StepHook, StepReached
from finalizer.service import Finalizer
from tests.pipeline.harness import NS, World
from tests.support.ledger import record_of
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

#: Bound on a drain: it must not wait for a follow stream that never ends by itself.
DRAIN_BOUND = 30.0


class Shown:
    """A trigger's side of the channel: every line it would write to the task log."""

    def __init__(self, spec: JobSpec) -> None:
        self.channel = LogChannel(follow=True)
        self.spec = spec
        self.texts: list[str] = []

    async def collect(self) -> None:
        while (chunk := await self.channel.get()) is not None:
            self.texts.extend(line for _, record in chunk.lines for line in record.split("\n"))


@asynccontextmanager
async def trigger_channel(spec: JobSpec) -> AsyncIterator[Shown]:
    shown = Shown(spec)
    with open_channel(spec.key, shown.channel):
        reader = asyncio.create_task(shown.collect())
        try:
            yield shown
        finally:
            shown.channel.end()
            await reader


async def launch(world: World, on_step: StepHook | None = None) -> Finalizer:
    return await anyio.to_thread.run_sync(
        lambda: Finalizer.launch(world.config, world.wiring(), on_step=on_step)
    )


async def parked_step(world: World, spec: JobSpec) -> int:
    return int((await record_of(world.ledger_url, spec.key)).step)


async def drain_parks(finalizer: Finalizer, waiter: asyncio.Future[Outcome]) -> None:
    with anyio.fail_after(DRAIN_BOUND):  # no hang on the follow stream
        await finalizer.adrain(1.0)
    with pytest.raises(FinalizerUnavailableError, match="parked"):
        await waiter


async def finish_on_restart(world: World, spec: JobSpec) -> list[str]:
    """A new instance and a re-run trigger's channel: the job ends; what that channel showed."""
    async with trigger_channel(spec) as shown:
        second = await launch(world)
        try:
            outcome = await second.submit(spec)
        finally:
            await second.adrain(2.0)
    assert outcome.kind is OutcomeKind.SUCCESS
    return shown.texts


async def test_a_drain_while_the_pod_runs_parks_the_job_and_the_stream_lost_nothing(world: World) -> None:
    spec = world.make_job(xcom='"followed"')
    world.kube.set_logs(NS, spec.pod.name, "base", ["one", "two"])
    finalizer = await launch(world)
    async with trigger_channel(spec) as first:
        waiter = asyncio.ensure_future(finalizer.submit(spec))
        await eventually(lambda: "[base] two" in first.texts, what="the followed lines")
        await drain_parks(finalizer, waiter)
    assert first.texts == ["[base] one", "[base] two"]  # each once, in order
    assert await parked_step(world, spec) < Step.COMPLETION_SEEN
    assert world.pod(spec) is not None
    assert world.deletes(spec) == 0
    # The pod goes on and ends; the next run shows the whole log again (documented), once.
    world.kube.append_logs(NS, spec.pod.name, "base", ["three"])
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    assert await finish_on_restart(world, spec) == ["[base] one", "[base] two", "[base] three"]
    assert world.xcom(spec) == "followed"
    assert world.deletes(spec) == 1


async def test_a_drain_while_the_job_waits_for_its_follower_parks_it_before_the_sidecar_stop(
    world: World,
) -> None:
    """The base container ended, the XCom is pushed, and the job waits (``FOLLOW_GRACE``) for a
    follow stream the fake holds: a drain then parks the job. Before 5251a39 a cancellation
    reaching the follower's stop was swallowed and the job went on to stop the sidecar and
    delete the pod, as if killed."""
    spec = world.make_job(xcom='"held"')
    world.kube.set_logs(NS, spec.pod.name, "base", ["only line"])
    held = world.kube.faults.add("GET", rf"/pods/{spec.pod.name}/log", status=None, latency=20.0, times=1)
    pushed = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def on_step(job: JobSpec, reached: StepReached) -> None:
        if job.key == spec.key and reached.step == Step.XCOM_PUSHED:
            loop.call_soon_threadsafe(pushed.set)

    finalizer = await launch(world, on_step)
    async with trigger_channel(spec) as first:
        waiter = asyncio.ensure_future(finalizer.submit(spec))
        await eventually(lambda: held.fired >= 1, what="the follow stream held by the fake")
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
        with anyio.fail_after(60):
            await pushed.wait()
        await drain_parks(finalizer, waiter)
    assert first.texts == []  # the held stream wrote nothing
    assert await parked_step(world, spec) == Step.XCOM_PERSISTED  # the last step written
    assert world.sidecar_stops(spec) == 0, "a drain must not go on to stop the sidecar"
    assert world.deletes(spec) == 0
    assert world.pod(spec) is not None
    # The re-run finishes from the ledger: the whole log shown, the sidecar stopped, the pod deleted.
    assert await finish_on_restart(world, spec) == ["[base] only line"]
    assert world.xcom(spec) == "held"
    assert world.sidecar_stops(spec) == 1
    assert world.deletes(spec) == 1
