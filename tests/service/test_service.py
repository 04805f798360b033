"""The process-wide Finalizer: own loop and thread, submit/join, health, drain, fail loudly."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from finalizer.config import FinalizerConfig
from finalizer.exceptions import FinalizerUnavailableError, LedgerUnavailableError
from finalizer.jobs import JobSpec, OutcomeKind, Step
from finalizer.ledger import Ledger
from finalizer.pipeline import StepHook, StepReached
from finalizer.seams import Wiring
from finalizer.service import Finalizer
from tests.pipeline.harness import NS, World, fast_config
from tests.support.polling import eventually


@asynccontextmanager
async def running(
    config: FinalizerConfig, wiring: Wiring, on_step: StepHook | None = None
) -> AsyncIterator[Finalizer]:
    finalizer = await anyio.to_thread.run_sync(lambda: Finalizer.launch(config, wiring, on_step=on_step))
    try:
        yield finalizer
    finally:
        await finalizer.adrain(2.0)


@pytest.mark.anyio
async def test_submit_from_another_loop_twice_joins_one_job(world: World) -> None:
    spec = world.make_job(xcom='{"n": 1}')
    async with running(world.config, world.wiring()) as finalizer:
        first = asyncio.ensure_future(finalizer.submit(spec))
        second = asyncio.ensure_future(finalizer.submit(spec))  # a trigger re-run: joins
        await eventually(lambda: finalizer.health().watching == 1)
        assert not first.done()
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
        a, b = await asyncio.gather(first, second)
        assert a == b
        assert a.kind is OutcomeKind.SUCCESS
        third = await finalizer.submit(spec)  # after DONE: the recorded outcome, no new work
        assert third == a
        health = finalizer.health()
        assert health.running
        assert health.jobs_done >= 1
        assert 0.0 <= health.loop_lag <= health.loop_lag_max  # measured (tests/unit/test_loop_lag.py)
        assert health.event_loop == "uvloop"  # event_loop = auto, uvloop installed
    assert world.xcom(spec) == {"n": 1}
    assert world.deletes(spec) == 1
    # One XCom read and one sidecar stop, over one exec session, despite three submissions.
    assert (world.xcom_reads(spec), world.sidecar_stops(spec), world.exec_sessions(spec)) == (1, 1, 1)


@pytest.mark.anyio
async def test_event_loop_asyncio_runs_the_job_on_asyncios_own_loop(world: World) -> None:
    spec = world.make_job(xcom="[7]")
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    config = world.config.model_copy(update={"event_loop": "asyncio"})
    async with running(config, world.wiring()) as finalizer:
        outcome = await finalizer.submit(spec)
        assert finalizer.health().event_loop == "asyncio"
    assert outcome.kind is OutcomeKind.SUCCESS
    assert world.xcom(spec) == [7]


@pytest.mark.anyio
async def test_concurrency_per_cluster_is_bounded(world: World) -> None:
    config = fast_config(world.config.state_dir, concurrency_per_cluster=2)
    seen: list[int] = []
    holder: list[Finalizer] = []

    async def on_step(spec: Any, rec: Any) -> None:
        if holder:
            seen.append(holder[0].health().in_flight)
        await anyio.sleep(0.01)

    specs = [world.make_job(xcom=str(i)) for i in range(6)]
    for spec in specs:
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
    async with running(config, world.wiring(), on_step) as finalizer:
        holder.append(finalizer)
        outcomes = await asyncio.gather(*(finalizer.submit(s) for s in specs))
    assert all(o.kind is OutcomeKind.SUCCESS for o in outcomes)
    assert seen
    assert max(seen) <= 2
    assert [world.xcom(s) for s in specs] == list(range(6))


@pytest.mark.anyio
async def test_drain_parks_waiting_jobs_never_deletes_and_a_restart_finishes_them(world: World) -> None:
    spec = world.make_job(xcom='"after restart"')
    finalizer = await anyio.to_thread.run_sync(lambda: Finalizer.launch(world.config, world.wiring()))
    waiter = asyncio.ensure_future(finalizer.submit(spec))
    await eventually(lambda: finalizer.health().watching == 1)
    await finalizer.adrain(1.0)
    with pytest.raises(FinalizerUnavailableError, match="parked"):
        await waiter
    with pytest.raises(FinalizerUnavailableError, match="draining or stopped"):
        await finalizer.submit(spec)
    assert world.pod(spec) is not None, "shutdown never deletes a pod"
    assert world.deletes(spec) == 0
    async with _ledger(world) as ledger:
        rec = await ledger.get(spec.key)
        assert rec is not None
        assert rec.step < Step.DONE
    # A new instance adopts the parked job (its owner unregistered) and finishes it once the pod ends.
    async with running(world.config, world.wiring()) as second:
        await eventually(lambda: second.health().watching == 1)
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
        outcome = await second.submit(spec)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert world.xcom(spec) == "after restart"
    assert world.deletes(spec) == 1


@asynccontextmanager
async def _ledger(world: World) -> AsyncIterator[Ledger]:
    ledger = await Ledger.connect(world.ledger_url)
    try:
        yield ledger
    finally:
        await ledger.aclose()


@pytest.mark.anyio
async def test_unreachable_ledger_at_start_fails_within_the_deadline(world: World) -> None:
    config = fast_config(
        world.config.state_dir, ledger_url="postgresql://postgres@127.0.0.1:1/nope", ledger_deadline=1.0
    )
    started = time.monotonic()
    with pytest.raises(LedgerUnavailableError):
        await anyio.to_thread.run_sync(
            lambda: Finalizer.launch(config, world.wiring(config.resolved_ledger_url))
        )
    assert time.monotonic() - started < 10.0  # 10x ledger_deadline; the default deadline is 60 s


@pytest.mark.anyio
async def test_payloads_are_purged_after_retention(world: World) -> None:
    config = fast_config(world.config.state_dir, payload_retention=0.0, maintenance_interval=0.1)
    spec = world.make_job(xcom='{"secret": "s3cr3t"}')
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    async with running(config, world.wiring()) as finalizer:
        outcome = await finalizer.submit(spec)
        assert outcome.kind is OutcomeKind.SUCCESS

        async def purged() -> bool:
            async with _ledger(world) as ledger:
                rec = await ledger.get(spec.key)
            return rec is not None and rec.xcom_purged and rec.xcom_value is None

        await eventually(purged, interval=0.1, what="the payload purged")
    assert world.xcom(spec) == {"secret": "s3cr3t"}  # Airflow keeps it; only our copy is gone


@pytest.mark.anyio
async def test_loop_torn_down_under_waiters_fails_them_instead_of_hanging(world: World) -> None:
    spec = world.make_job(xcom="1")
    finalizer = await anyio.to_thread.run_sync(lambda: Finalizer.launch(world.config, world.wiring()))
    try:
        waiter = asyncio.ensure_future(finalizer.submit(spec))
        await eventually(lambda: finalizer.health().watching == 1)
        thread = finalizer._thread
        assert thread is not None
        await anyio.to_thread.run_sync(thread.stop_now)  # the loop dies
        with anyio.fail_after(10), pytest.raises(FinalizerUnavailableError):
            await waiter
        await eventually(lambda: not finalizer.health().running)
        with pytest.raises(FinalizerUnavailableError):
            await finalizer.submit(spec)
        assert world.pod(spec) is not None
        assert world.deletes(spec) == 0
    finally:
        await finalizer.adrain(1.0)


@pytest.mark.anyio
async def test_queue_bound_holds_further_jobs_back_until_there_is_room(world: World) -> None:
    config = fast_config(world.config.state_dir, queue_bound=1)
    first, second = world.make_job(xcom="1"), world.make_job(xcom="2")
    steps: list[tuple[str, Step]] = []
    holding, release = threading.Event(), threading.Event()

    async def on_step(spec: JobSpec, reached: StepReached) -> None:
        steps.append((spec.key, reached.step))
        if spec.key == first.key and reached.step is Step.XCOM_PERSISTED:
            holding.set()  # first, in the only room, has written its payload: hold it there
            await anyio.to_thread.run_sync(release.wait, abandon_on_cancel=True)

    async with running(config, world.wiring(), on_step) as finalizer:
        try:
            a = asyncio.ensure_future(finalizer.submit(first))
            await eventually(lambda: finalizer.health().watching == 1)
            b = asyncio.ensure_future(finalizer.submit(second))
            world.kube.terminate(NS, second.pod.name, exit_code=0)  # ready, but no room yet
            world.kube.terminate(NS, first.pod.name, exit_code=0)
            # Since second was submitted, first has seen its pod end (after second's), read the
            # XCom and written it to the ledger; second is still held back.
            assert await anyio.to_thread.run_sync(holding.wait, 30), "first never persisted its XCom"
            assert not b.done()
            async with _ledger(world) as ledger:
                assert await ledger.get(second.key) is None  # not admitted, not registered
        finally:
            release.set()
        outcomes = await asyncio.gather(a, b)
    assert [o.kind for o in outcomes] == [OutcomeKind.SUCCESS, OutcomeKind.SUCCESS]
    assert (world.xcom(first), world.xcom(second)) == (1, 2)
    room = steps.index((first.key, Step.DONE))
    assert all(at > room for at, (key, _) in enumerate(steps) if key == second.key), steps


@pytest.mark.anyio
async def test_delete_pod_for_on_kill_deletes_only_this_uid(world: World) -> None:
    """``on_kill`` deletes through the finalizer: the pod's uid is a precondition."""
    from finalizer.exceptions import PodConflictError

    ours, replaced = world.make_job(), world.make_job()
    world.kube.force_delete(NS, replaced.pod.name)
    world.kube.create_pod(NS, name=replaced.pod.name)  # the name now belongs to another pod
    async with running(world.config, world.wiring()) as finalizer:
        assert await finalizer.delete_pod(ours) is True
        assert await finalizer.delete_pod(ours) is False  # already gone (or terminating): done
        with pytest.raises(PodConflictError):
            await finalizer.delete_pod(replaced)
    assert world.kube.get_pod(NS, replaced.pod.name) is not None, "another uid's pod is not ours to delete"
    assert world.deletes(ours) >= 1
