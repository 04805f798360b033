"""What an adopter checks before it acts on a job (issue 13, review findings 2 and 5).

Real parts: the finalizer service, its ledger, the fake Kubernetes API (its audit says whether a
pod was touched) and Airflow's metadata DB for the task's state. Airflow being unreachable is a
``TaskState`` that raises while an outage lasts: the channel to Airflow, not our code.
"""

from __future__ import annotations

import asyncio
import dataclasses
from contextlib import AsyncExitStack

import anyio
import pytest

from finalizer.config import FinalizerConfig
from finalizer.jobs import JobSpec, Step
from finalizer.ledger import Ledger
from finalizer.seams import Foundation, Wiring
from tests.pipeline.harness import NS, World
from tests.service.test_handover import dead_owner_of, running, with_airflow_state
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


async def test_an_adopter_leaves_the_job_of_an_older_try_of_a_deferred_task(world: World) -> None:
    """Failed before the fix: Airflow said DEFERRED (for try 2, after a clear) and the adopter
    read try 1's pod, pushed its XCom into try 2's slot and deleted the pod.

    Ordered by events, not by the adopter's quiet window: try 1's owner is made dead (its job
    adoptable) only once try 2's submit is in the ledger."""
    old = world.make_job(xcom='"try 1"')
    spare = world.make_job()  # a pod for try 2 (its run is not used)
    new = old.model_copy(update={"ti": old.ti.model_copy(update={"try_number": 2}), "pod": spare.pod})
    world.env.set_ti_state(old.ti.id, "deferred", try_number=2)  # cleared, re-run, deferred again
    world.kube.terminate(NS, old.pod.name, exit_code=0)
    async with (
        await Ledger.connect(world.ledger_url) as ledger,
        running(world, with_airflow_state(world, world.wiring())) as finalizer,
    ):
        waiting = asyncio.ensure_future(finalizer.submit(new))  # try 2's trigger, here

        async def try_2_recorded() -> bool:
            return await ledger.get(new.key) is not None

        await eventually(try_2_recorded, within=20, what="try 2's job in the ledger")
        async with dead_owner_of(world, old):
            pass  # only now is try 1's job adoptable: its owner died after registering it

        async def left() -> bool:
            rec = await ledger.get(old.key)
            return rec is not None and rec.handed_over_at is not None

        handed: bool = await eventually(left, within=20, what="try 1's job handed over")
        assert handed
        rec = await ledger.get(old.key)
        assert rec is not None
        assert rec.error is not None
        assert "superseded by try 2" in rec.error
        assert rec.step is Step.REGISTERED
        waiting.cancel()
    assert (world.xcom_reads(old), world.sidecar_stops(old), world.deletes(old)) == (0, 0, 0)
    assert world.pod(old) is not None
    assert not world.has_xcom(old)


def airflow_with_outage(world: World, wiring: Wiring, down: anyio.Event, calls: list[float]) -> Wiring:
    """Airflow's state of the TI, unreachable until ``down`` is set; every question is counted."""
    inner = with_airflow_state(world, wiring)

    async def wire(config: FinalizerConfig, stack: AsyncExitStack) -> Foundation:
        foundation = await inner(config, stack)
        ask = foundation.task_state
        assert ask is not None

        async def task_state(spec: JobSpec) -> str | None:
            calls.append(anyio.current_time())
            if not down.is_set():
                raise ConnectionRefusedError("the Execution API is not answering")
            return await ask(spec)

        return dataclasses.replace(foundation, task_state=task_state)

    return wire


async def test_while_airflow_is_unreachable_the_adopter_keeps_the_claim_and_backs_off(world: World) -> None:
    """Failed before the fix: each round (every adopt_interval) the adopter adopted the job,
    could not ask Airflow, released it, and adopted it again: ~25 questions and ~50 epoch bumps
    in 5 s. Now: one adoption, questions with doubling waits, then the job finishes once."""
    spec = world.make_job(xcom='"once"')
    world.env.set_ti_state(spec.ti.id, "deferred")
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    back = anyio.Event()
    calls: list[float] = []
    wiring = airflow_with_outage(world, world.wiring(), back, calls)
    async with dead_owner_of(world, spec) as ledger, running(world, wiring):
        before = await ledger.get(spec.key)
        assert before is not None
        await eventually(lambda: len(calls) >= 1, within=20, what="the adopter asks Airflow")
        await anyio.sleep(5.0)  # the stimulus: Airflow's outage lasts 5 s (25 adoption rounds)
        held = await ledger.get(spec.key)
        assert held is not None
        assert held.epoch == before.epoch + 1, "adopted once, never released and re-adopted"
        assert held.owner is not None
        assert held.step is Step.REGISTERED  # nothing acted meanwhile
        assert len(calls) <= 4, f"asked Airflow {len(calls)} times in 5 s: not backing off"
        back.set()

        async def finished() -> bool:
            rec = await ledger.get(spec.key)
            return rec is not None and rec.done

        done: bool = await eventually(finished, within=40, what="the job finishes once Airflow answers")
        assert done
    assert world.xcom(spec) == "once"
    assert world.deletes(spec) == 1
