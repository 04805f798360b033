"""A task handed to the worker is never touched again by a finalizer (issue 13, weakness 3).

Real parts: the finalizer service, its ledger, the fake Kubernetes API, and Airflow's own
metadata DB for the task's state (what ``Foundation.task_state`` reads; inside the triggerer it is
the supervisor's ``get_task_states``, the call ``on_kill`` makes).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from finalizer.config import FinalizerConfig
from finalizer.exceptions import JobHandedOverError
from finalizer.handover import PendingHandovers
from finalizer.jobs import JobSpec, Step
from finalizer.ledger import Ledger
from finalizer.seams import Foundation, Wiring
from finalizer.service import Finalizer
from tests.pipeline.harness import NS, World
from tests.support.ledger import backdate
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


def with_airflow_state(world: World, wiring: Wiring) -> Wiring:
    """The world's foundation, plus the task's state read from Airflow's metadata DB."""

    async def task_state(spec: JobSpec) -> str | None:
        info = await anyio.to_thread.run_sync(world.env.get_ti, spec.ti.id)
        return info.state

    async def wire(config: FinalizerConfig, stack: AsyncExitStack) -> Foundation:
        return dataclasses.replace(await wiring(config, stack), task_state=task_state)

    return wire


@asynccontextmanager
async def running(
    world: World, wiring: Wiring, handovers: PendingHandovers | None = None
) -> AsyncIterator[Finalizer]:
    finalizer = await anyio.to_thread.run_sync(
        lambda: Finalizer.launch(world.config, wiring, handovers=handovers)
    )
    try:
        yield finalizer
    finally:
        await finalizer.adrain(2.0)


@asynccontextmanager
async def dead_owner_of(world: World, *specs: JobSpec) -> AsyncIterator[Ledger]:
    """A triggerer that registered ``specs`` and died (no hand-over reached the ledger)."""
    async with await Ledger.connect(world.ledger_url) as ledger:
        dead = await ledger.register_instance("dead-triggerer", 1)
        for spec in specs:
            await ledger.submit(spec, dead)
        await backdate(ledger, dead)
        yield ledger


async def test_an_adopter_asks_airflow_and_leaves_a_task_that_went_to_the_worker(world: World) -> None:
    """Failed before the fix: the adopter took the job of a task already SCHEDULED for its
    worker's trigger_reentry, pushed its XCom and deleted its pod."""
    to_worker = world.make_job(xcom='"worker reads this"')
    deferred = world.make_job(xcom='"finalizer"')
    world.env.set_ti_state(to_worker.ti.id, "scheduled")
    world.env.set_ti_state(deferred.ti.id, "deferred")
    for spec in (to_worker, deferred):
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
    async with (
        dead_owner_of(world, to_worker, deferred) as ledger,
        running(world, with_airflow_state(world, world.wiring())),
    ):

        async def settled() -> bool:
            a, b = await ledger.get(to_worker.key), await ledger.get(deferred.key)
            return a is not None and a.handed_over_at is not None and b is not None and b.done

        done: bool = await eventually(settled, within=20, what="one job handed over, the other finished")
        assert done
        left = await ledger.get(to_worker.key)
        assert left is not None
        assert left.error is not None
        assert "scheduled, not DEFERRED" in left.error
        assert left.step is Step.REGISTERED
    # The worker's pod: untouched (no XCom read, no stop, no delete); the other finished normally.
    assert (world.xcom_reads(to_worker), world.sidecar_stops(to_worker), world.deletes(to_worker)) == (
        0,
        0,
        0,
    )
    assert world.pod(to_worker) is not None
    assert not world.has_xcom(to_worker)
    assert world.deletes(deferred) == 1
    assert world.xcom(deferred) == "finalizer"


async def test_a_pending_hand_over_is_written_before_anything_is_adopted(world: World) -> None:
    """The hand-over the ledger could not take (it was down) is recorded by the next finalizer
    before its first adoption round: the job is never adopted, even with no Airflow check wired."""
    spec = world.make_job(xcom='"w"')
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    pending = PendingHandovers()
    pending.add(spec.key, "the ledger was unreachable; the worker finishes the task")
    async with dead_owner_of(world, spec) as ledger, running(world, world.wiring(), pending) as finalizer:
        rec = await ledger.get(spec.key)
        assert rec is not None
        assert rec.handed_over_at is not None  # written during start-up, before adoption began
        assert rec.error == "the ledger was unreachable; the worker finishes the task"
        assert len(pending) == 0
        with pytest.raises(JobHandedOverError, match="handed to the worker path"):
            await finalizer.submit(spec)  # a re-run trigger of the same try finds it handed over
        await anyio.sleep(3 * world.config.adopt_interval)  # the stimulus: adoption rounds pass
    assert (world.xcom_reads(spec), world.deletes(spec)) == (0, 0)


async def test_hand_over_on_a_running_finalizer_is_recorded_at_once(world: World) -> None:
    spec = world.make_job(xcom='"x"')
    async with running(world, world.wiring()) as finalizer:
        waiter = asyncio.ensure_future(finalizer.submit(spec))
        await eventually(lambda: finalizer.health().watching == 1)
        waiter.cancel()
        assert await finalizer.hand_over(spec, "fallback: the worker ends the task")
        assert spec.key not in finalizer.handovers
        async with await Ledger.connect(world.ledger_url) as ledger:
            rec = await ledger.get(spec.key)
        assert rec is not None
        assert rec.handed_over_at is not None
        assert rec.owner is None
        with pytest.raises(JobHandedOverError):
            await finalizer.submit(world.jobs[-1].model_copy())  # same key: refused, not joined twice
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
        # The job still tracked here is fenced out at its first write: no push, no delete.
        await eventually(lambda: finalizer.health().watching == 0, within=10)
    assert world.deletes(spec) == 0
    assert not world.has_xcom(spec)
