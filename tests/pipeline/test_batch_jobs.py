"""A batch/v1 Job finalized end to end: the fake's Job controller, real Execution API, real ledger.

Each case makes a Job on the fake cluster, runs the pipeline for its ``batch_job_spec`` and
plays the kubelet for the member pods (``Kubelet`` below: start, write the XCom, end the base
container) so each pod can hold its own XCom; then reads back Airflow's XComs, the fake's pods,
Jobs and exec commands, and the ledger.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from finalizer.jobs import JobSpec, Outcome, OutcomeKind, StartupRules, Step
from finalizer.log_channel import LogChannel, open_channel
from tests.pipeline.harness import (
    BOUNDARIES,
    NS,
    Rig,
    World,
    cancel_at,
    kill_at,
    recorded,
    rerun_elsewhere,
    resume,
)
from tests.pipeline.test_pipeline_logs import collect
from tests.service.test_service import running
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

MARKER = "__kpo_finalizer_outcome"
#: What one member pod does: (its XCom or None, the base container's exit code), by creation order.
Plan = Callable[[int, dict[str, Any]], tuple[str | None, int]]


def xcom_per_pod(seq: int, pod: dict[str, Any]) -> tuple[str | None, int]:
    return json.dumps({"pod": pod["metadata"]["name"]}), 0


class Kubelet:
    """Runs a Job's pods as the controller creates them (the fake's auto-kubelet gives every pod
    the same XCom); a stand-in for the node, so it looks at the pods every 20 ms."""

    def __init__(self, world: World, spec: JobSpec, plan: Plan = xcom_per_pod) -> None:
        self.world, self.spec, self.plan = world, spec, plan
        self.ran: list[str] = []

    def step(self) -> None:
        kube = self.world.kube
        for pod in sorted(kube.job_pods(NS, self.spec.pod.name), key=lambda p: p["metadata"]["name"]):
            name = pod["metadata"]["name"]
            if name in self.ran or pod["metadata"].get("deletionTimestamp"):
                continue
            xcom, code = self.plan(len(self.ran), pod)
            self.ran.append(name)
            kube.start(NS, name)
            kube.set_logs(NS, name, "base", [f"hello from {name}"])
            if xcom is not None:
                kube.write_xcom(NS, name, xcom)
            kube.terminate(NS, name, exit_code=code)

    async def run_until(self, done: Callable[[], bool]) -> None:
        while not done():
            self.step()
            await anyio.sleep(0.02)


async def finalize(
    rig: Rig, world: World, spec: JobSpec, plan: Plan = xcom_per_pod, *, kubelet: Kubelet | None = None
) -> tuple[Outcome, Kubelet]:
    """Run the pipeline for ``spec`` while the kubelet runs its pods; returns the outcome."""
    kubelet = kubelet or Kubelet(world, spec, plan)
    task = asyncio.ensure_future(rig.run(spec))
    with anyio.fail_after(60):
        await kubelet.run_until(task.done)
    return await task, kubelet


def assert_read_once(world: World, spec: JobSpec, names: list[str]) -> None:
    for name in names:
        assert world.xcom_reads(spec, name) == 1, f"{name}: the XCom is read once"
        assert world.sidecar_stops(spec, name) == 1, f"{name}: the sidecar is stopped once"


async def test_parallelism_three_pushes_each_pods_xcom_in_name_order(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 3, "completions": 3})
    outcome, kubelet = await finalize(rig, world, spec)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    names = sorted(kubelet.ran)
    assert len(names) == 3
    assert world.xcom(spec) == [{"pod": n} for n in names]
    job = world.xcom(spec, "job")
    assert job["metadata"]["name"] == spec.pod.name
    assert job["metadata"]["uid"] == spec.pod.uid
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    assert_read_once(world, spec, names)
    assert world.kube.job_pods(NS, spec.pod.name) == [] or all(
        p["metadata"].get("deletionTimestamp") for p in world.kube.job_pods(NS, spec.pod.name)
    ), "on_finish_action=delete_pod deletes every member"
    assert world.kube.get_job(NS, spec.pod.name) is not None, "the Job is left to its TTL by default"
    assert not world.has_xcom(spec, MARKER)
    assert rig.ledger is not None
    rec = await rig.ledger.get(spec.key)
    assert rec is not None
    assert rec.step is Step.DONE
    assert sorted(m["name"] for m in rec.xcom_value["members"].values()) == names


async def test_parallelism_one_unwraps_the_single_value(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 1})
    outcome, kubelet = await finalize(rig, world, spec)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    assert world.xcom(spec) == {"pod": kubelet.ran[0]}


async def test_parallelism_one_keeps_the_list_without_unwrap_single(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 1}, job={"unwrap_single": False})
    outcome, kubelet = await finalize(rig, world, spec)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    assert world.xcom(spec) == [{"pod": kubelet.ran[0]}]


async def test_indexed_job_pushes_in_completion_index_order(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 3, "completions": 3, "completion_mode": "Indexed"})

    def by_index(seq: int, pod: dict[str, Any]) -> tuple[str | None, int]:
        return json.dumps(int(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])), 0

    outcome, _ = await finalize(rig, world, spec, by_index)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    assert world.xcom(spec) == [0, 1, 2]


async def test_backoff_limit_exceeded_fails_after_reading_and_stopping_every_try(
    world: World, rig: Rig
) -> None:
    world.kube.job_backoff_seconds = 0.05
    spec = world.make_batch_job({"parallelism": 1, "backoff_limit": 1})

    def fails(seq: int, pod: dict[str, Any]) -> tuple[str | None, int]:
        return json.dumps({"try": seq}), 1

    outcome, kubelet = await finalize(rig, world, spec, fails)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == "Job failed with error: BackoffLimitExceeded"
    assert len(kubelet.ran) == 2, "the retry pod was read too: its sidecar held the Job open otherwise"
    assert_read_once(world, spec, kubelet.ran)
    assert not world.has_xcom(spec), "a failed Job pushes no XCom list"
    assert world.xcom(spec, "job")["metadata"]["name"] == spec.pod.name
    assert world.xcom(spec, MARKER)["outcome"]["kind"] == "failed"


async def test_member_without_sidecar_fails_at_once_and_deletes_the_job(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 1, "with_xcom_sidecar": False})
    with anyio.fail_after(30):
        outcome = await rig.run(spec)  # its pods never even start: nothing waits for them
    assert outcome.kind is OutcomeKind.FAILED
    assert "has no airflow-xcom-sidecar container" in outcome.reason
    assert world.kube.get_job(NS, spec.pod.name) is None, "a Job that cannot be finished is not left running"


async def test_job_deleted_midway_fails_naming_the_job(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 2, "completions": 2})
    task = asyncio.ensure_future(rig.run(spec))
    await eventually(lambda: len(world.kube.job_pods(NS, spec.pod.name)) == 2, what="both pods created")
    world.kube.delete_job(NS, spec.pod.name, "Background")
    with anyio.fail_after(30):
        outcome = await task
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == f"Job {NS}/{spec.pod.name} was deleted before it finished"
    assert not world.has_xcom(spec)
    assert world.xcom(spec, MARKER)["outcome"]["kind"] == "failed"


async def test_keep_pod_keeps_and_labels_every_member(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 2, "completions": 2}, on_finish_action="keep_pod")
    outcome, kubelet = await finalize(rig, world, spec)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    pods = {p["metadata"]["name"]: p for p in world.kube.job_pods(NS, spec.pod.name)}
    assert sorted(pods) == sorted(kubelet.ran)
    for pod in pods.values():
        assert pod["metadata"]["labels"].get("already_checked") == "True"
        assert not pod["metadata"].get("deletionTimestamp")


@pytest.mark.parametrize("policy", ["Orphan", "Background"])
async def test_delete_job_with_its_propagation_policy(world: World, rig: Rig, policy: str) -> None:
    spec = world.make_batch_job(
        {"parallelism": 1},
        job={"delete_job": True, "propagation_policy": policy},
        on_finish_action="keep_pod",
    )
    outcome, kubelet = await finalize(rig, world, spec)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    assert world.kube.get_job(NS, spec.pod.name) is None
    deletes = [r for r in world.kube.requests if r.verb == "delete" and r.name == spec.pod.name]
    assert [r.status < 300 for r in deletes] == [True]
    kept = world.kube.get_pod(NS, kubelet.ran[0])
    if policy == "Orphan":
        assert kept is not None, "Orphan: the kept pod outlives its Job"
        assert not kept["metadata"].get("ownerReferences")
        assert kept["metadata"]["labels"].get("already_checked") == "True"
    else:
        assert kept is None or kept["metadata"].get("deletionTimestamp"), "Background: the GC takes the pod"


async def persisted(world: World, spec: JobSpec) -> tuple[Step, set[str]]:
    """The job's recorded step and the members whose read the ledger holds."""
    rec = await recorded(world, spec)
    members = (rec.xcom_value or {}).get("members") or {}
    return rec.step, {m["name"] for m in members.values()}


def assert_finished_once(
    world: World, spec: JobSpec, outcome: Outcome, kubelet: Kubelet, read_before: set[str]
) -> None:
    """One push of the whole list; a member whose read was persisted is never read again (one
    read in flight at the crash, not persisted yet, is read once more), every sidecar stopped once."""
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    names = sorted(kubelet.ran)
    assert world.xcom(spec) == [{"pod": n} for n in names]
    for name in names:
        reads = world.xcom_reads(spec, name)
        assert reads == 1 if name in read_before else reads in (1, 2), f"{name}: read {reads} times"
        assert world.sidecar_stops(spec, name) == 1, f"{name}: the sidecar is stopped once"
    for name in names:
        deletes = [r for r in world.kube.requests if r.verb == "delete" and r.name == name and r.status < 300]
        assert len(deletes) == 1, f"{name} is deleted once"


@pytest.mark.parametrize("step", BOUNDARIES, ids=lambda s: s.name)
async def test_cancelled_at_each_step_resumes_reading_nothing_twice(
    world: World, rig: Rig, step: Step
) -> None:
    spec = world.make_batch_job({"parallelism": 2, "completions": 2})
    kubelet = Kubelet(world, spec)
    assert rig.ledger is not None
    resumed: list[Outcome] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(kubelet.run_until, lambda: bool(resumed))
        with anyio.fail_after(60):
            await cancel_at(rig, spec, step)
        if step < Step.POD_CLEANED:  # restart != kill: a cancelled job leaves its pods and Job as they are
            deletes = [r for r in world.kube.requests if r.verb == "delete" and r.name]
            assert not [r for r in deletes if (r.name or "").startswith(spec.pod.name)]
        _, read_before = await persisted(world, spec)
        assert read_before, "at least one member's read was persisted before the crash"
        await rig.ledger.unregister(rig.owner)  # the crashed instance is gone
        with anyio.fail_after(60):
            resumed.append(await resume(world, spec))
    assert_finished_once(world, spec, resumed[0], kubelet, read_before)


#: Where a process killed right after reaching a step finds its batch job in the ledger.
KILLED_AT = {
    Step.REGISTERED: Step.REGISTERED,  # one member's read is persisted, the other's not yet
    Step.XCOM_PERSISTED: Step.XCOM_PERSISTED,
    Step.SIDECAR_STOPPED: Step.XCOM_PERSISTED,
}


@pytest.mark.parametrize("step", list(KILLED_AT), ids=lambda s: s.name)
async def test_killed_process_resumes_reading_nothing_twice(world: World, tmp_path: Path, step: Step) -> None:
    spec = world.make_batch_job({"parallelism": 2, "completions": 2})
    kubelet = Kubelet(world, spec)
    resumed: list[Outcome] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(kubelet.run_until, lambda: bool(resumed))
        with anyio.fail_after(60):
            rec = await kill_at(world, spec, step, tmp_path)
        assert rec.step == KILLED_AT[step]
        _, read_before = await persisted(world, spec)
        assert read_before
        with anyio.fail_after(60):
            resumed.append(await resume(world, spec, wait_stale=True))
    assert_finished_once(world, spec, resumed[0], kubelet, read_before)


async def test_the_service_finishes_a_batch_spec_and_on_kill_deletes_the_job(world: World) -> None:
    """What ``FinalizingJobTrigger`` uses: ``Finalizer.submit`` and, for ``on_kill``, ``delete_pod``."""
    spec = world.make_batch_job({"parallelism": 1})
    killed = world.make_batch_job({"parallelism": 2, "completions": 2})
    kubelet = Kubelet(world, spec)
    async with running(world.config, world.wiring()) as finalizer:
        task = asyncio.ensure_future(finalizer.submit(spec))
        with anyio.fail_after(60):
            await kubelet.run_until(task.done)
        outcome = await task
        assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
        assert world.xcom(spec) == {"pod": kubelet.ran[0]}
        await eventually(lambda: len(world.kube.job_pods(NS, killed.pod.name)) == 2, what="pods created")
        for pod in world.kube.job_pods(NS, killed.pod.name):
            world.kube.start(NS, pod["metadata"]["name"])
        world.kube.deletion_delay = 1.0  # running pods take a while to go: the Job waits for them
        assert await finalizer.delete_pod(killed) is True
        # Foreground (on_kill_propagation_policy's default): the pods go first, then the Job.
        job = world.kube.get_job(NS, killed.pod.name)
        assert job is not None
        assert "foregroundDeletion" in job["metadata"]["finalizers"]
    deletes = [r for r in world.kube.requests if r.verb == "delete" and r.name == killed.pod.name]
    assert [r.status for r in deletes] == [200]
    await eventually(lambda: world.kube.get_job(NS, killed.pod.name) is None, what="the Job collected")
    assert not [p for p in world.kube.list_pods(NS) if p["metadata"]["name"].startswith(killed.pod.name)]


@pytest.mark.parametrize("get_logs", [True, False])
async def test_each_members_log_goes_to_the_channel_in_member_order(
    world: World, rig: Rig, get_logs: bool
) -> None:
    spec = world.make_batch_job({"parallelism": 3, "completions": 3})
    channel, lines = LogChannel(want_logs=get_logs), list[tuple[int, str]]()
    with open_channel(spec.key, channel):
        reader = asyncio.ensure_future(collect(channel, lines))
        outcome, kubelet = await finalize(rig, world, spec)
        channel.end()
        await reader
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    expected = [(logging.INFO, f"[base] logs: hello from {name}") for name in sorted(kubelet.ran)]
    assert lines == (expected if get_logs else [])


async def test_member_deleted_before_the_job_counted_it_is_replaced(world: World, rig: Rig) -> None:
    """A pod whose base ended but whose sidecar still ran is not one of the Job's completions: the
    controller replaces it, and the list holds the two pods the Job counted."""
    spec = world.make_batch_job({"parallelism": 1, "completions": 2})
    kubelet = Kubelet(world, spec)
    await eventually(lambda: world.kube.job_pods(NS, spec.pod.name), what="the first pod created")
    kubelet.step()
    first = kubelet.ran[0]
    world.kube.force_delete(NS, first)  # before any finalizer saw it
    outcome, _ = await finalize(rig, world, spec, kubelet=kubelet)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    counted = [n for n in kubelet.ran if n != first]
    assert len(counted) == 2
    assert world.xcom(spec) == [{"pod": n} for n in sorted(counted)]
    assert world.xcom_reads(spec, first) == 0


async def test_succeeded_member_deleted_before_its_read_fails_the_task(world: World, rig: Rig) -> None:
    """A pod the Job counted as succeeded (its sidecar stopped by someone else) and deleted before
    any finalizer read it: the XCom list would have a hole, so the task fails."""
    spec = world.make_batch_job({"parallelism": 1, "completions": 2})
    kubelet = Kubelet(world, spec)
    await eventually(lambda: world.kube.job_pods(NS, spec.pod.name), what="the first pod created")
    kubelet.step()
    first = kubelet.ran[0]
    world.kube.terminate(NS, first, container="airflow-xcom-sidecar", exit_code=0)

    def counted() -> bool:
        job = world.kube.get_job(NS, spec.pod.name)
        return job is not None and job["status"].get("succeeded") == 1

    await eventually(counted, what="the Job counting the first pod")
    world.kube.force_delete(NS, first)
    outcome, _ = await finalize(rig, world, spec, kubelet=kubelet)
    assert outcome.kind is OutcomeKind.FAILED
    assert "1 of its 2 succeeded pods were deleted before their XCom was read" in outcome.reason
    assert not world.has_xcom(spec)


async def test_rejected_xcom_of_a_succeeded_member_fails_naming_it(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 2, "completions": 2})

    def one_bad(seq: int, pod: dict[str, Any]) -> tuple[str | None, int]:
        return ("{not json" if seq == 0 else "1"), 0

    outcome, kubelet = await finalize(rig, world, spec, one_bad)
    assert outcome.kind is OutcomeKind.FAILED
    assert f"completed, but pod {kubelet.ran[0]}: the XCom was read and rejected" in outcome.reason
    assert not world.has_xcom(spec)
    assert_read_once(world, spec, kubelet.ran)


async def test_execution_deadline_fails_and_deletes_the_unfinished_job(world: World, rig: Rig) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=1)
    spec = world.make_batch_job({"parallelism": 1}, startup=StartupRules(execution_deadline=deadline))
    with anyio.fail_after(30):
        outcome = await rig.run(spec)  # no kubelet: its pod never runs
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.event_status == "timeout"
    assert "did not finish before the task's execution deadline" in outcome.reason
    assert datetime.now(UTC) >= deadline
    assert world.kube.get_job(NS, spec.pod.name) is None


async def test_without_do_xcom_push_nothing_is_read_and_the_job_is_pushed(world: World, rig: Rig) -> None:
    """No sidecar to read or stop: the pods end by themselves, the Job's conditions decide."""
    spec = world.make_batch_job(
        {"parallelism": 2, "completions": 2, "with_xcom_sidecar": False}, do_xcom_push=False
    )

    def no_xcom(seq: int, pod: dict[str, Any]) -> tuple[str | None, int]:
        return None, 0

    outcome, kubelet = await finalize(rig, world, spec, no_xcom)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    assert len(kubelet.ran) == 2
    assert not world.has_xcom(spec)
    assert world.xcom(spec, "job")["status"]["succeeded"] == 2
    assert not [c for c in world.kube.exec_commands(NS) if c.name.startswith(spec.pod.name)]


async def test_active_deadline_exceeded_fails_with_upstreams_message(world: World, rig: Rig) -> None:
    spec = world.make_batch_job({"parallelism": 1, "active_deadline_seconds": 1})
    with anyio.fail_after(30):
        outcome = await rig.run(spec)  # no kubelet: its pod never runs, the Job's deadline ends it
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == "Job failed with error: DeadlineExceeded"
    assert world.kube.get_job(NS, spec.pod.name) is not None, "a terminal Job is left to its TTL"


async def test_member_whose_image_never_pulls_fails_at_once_and_deletes_the_job(
    world: World, rig: Rig
) -> None:
    spec = world.make_batch_job({"parallelism": 1})
    await eventually(lambda: world.kube.job_pods(NS, spec.pod.name), what="the pod created")
    pod = world.kube.job_pods(NS, spec.pod.name)[0]["metadata"]["name"]
    world.kube.image_pull_failure(NS, pod, "InvalidImageName", "bad image reference")
    with anyio.fail_after(30):
        outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert f"pod {pod}: Image cannot be pulled, unable to start: InvalidImageName" in outcome.reason
    assert world.kube.get_job(NS, spec.pod.name) is None, "the Job would wait for it: deleted"


async def test_on_a_postgresql_ledger_a_resume_reads_nothing_twice(
    world: World, make_postgres_database: Callable[[str], str]
) -> None:
    """The member reads' compare-and-set writes on PostgreSQL: crash after the first, resume."""
    pg = World(world.kube, world.airflow, make_postgres_database("kpof_batch"), world.config)
    spec = pg.make_batch_job({"parallelism": 3, "completions": 3})
    kubelet = Kubelet(pg, spec)
    resumed: list[Outcome] = []
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        rig = await Rig(pg, stack).open()
        assert rig.ledger is not None
        tg.start_soon(kubelet.run_until, lambda: bool(resumed))
        with anyio.fail_after(60):
            await cancel_at(rig, spec, Step.REGISTERED)
        _, read_before = await persisted(pg, spec)
        await rig.ledger.unregister(rig.owner)
        with anyio.fail_after(60):
            resumed.append(await resume(pg, spec))
    assert len(kubelet.ran) == 3
    assert_finished_once(pg, spec, resumed[0], kubelet, read_before)


async def test_rerun_on_another_triggerer_after_success_reads_the_stored_return_value(
    world: World, rig: Rig, tmp_path: Path
) -> None:
    """The pods are deleted, the Job is left: a re-run with its own empty ledger must not call the
    pods lost; this try's stored return_value shows the success (``decisions.marker``)."""
    spec = world.make_batch_job({"parallelism": 2, "completions": 2})
    first, kubelet = await finalize(rig, world, spec)
    assert first.kind is OutcomeKind.SUCCESS, first.reason
    with anyio.fail_after(30):
        again = await rerun_elsewhere(world, spec, tmp_path)
    assert again.kind is OutcomeKind.SUCCESS
    assert "its return_value XCom is stored" in again.reason
    assert world.xcom(spec) == [{"pod": n} for n in sorted(kubelet.ran)]
    assert_read_once(world, spec, kubelet.ran)


async def test_rerun_on_another_triggerer_after_failure_reads_the_marker(
    world: World, rig: Rig, tmp_path: Path
) -> None:
    world.kube.job_backoff_seconds = 0.05
    spec = world.make_batch_job({"parallelism": 1, "backoff_limit": 0})

    def fails(seq: int, pod: dict[str, Any]) -> tuple[str | None, int]:
        return "1", 2

    first, _ = await finalize(rig, world, spec, fails)
    assert first.kind is OutcomeKind.FAILED
    world.kube.delete_job(NS, spec.pod.name, "Background")  # gone before the re-run
    with anyio.fail_after(30):
        again = await rerun_elsewhere(world, spec, tmp_path)
    assert again == first


async def test_job_orphan_deleted_midway_fails_and_cleans_up_its_pods(world: World, rig: Rig) -> None:
    """With Orphan the pods outlive their Job; they are still its members (controller-uid label)
    and get on_finish_action like any member."""
    spec = world.make_batch_job({"parallelism": 2, "completions": 2})
    task = asyncio.ensure_future(rig.run(spec))
    await eventually(lambda: len(world.kube.job_pods(NS, spec.pod.name)) == 2, what="both pods created")
    names = [p["metadata"]["name"] for p in world.kube.job_pods(NS, spec.pod.name)]
    for name in names:
        world.kube.start(NS, name)
    world.kube.delete_job(NS, spec.pod.name, "Orphan")
    with anyio.fail_after(30):
        outcome = await task
    assert outcome.reason == f"Job {NS}/{spec.pod.name} was deleted before it finished"
    for name in names:
        deletes = [r for r in world.kube.requests if r.verb == "delete" and r.name == name and r.status < 300]
        assert len(deletes) == 1, f"{name}: deleted by on_finish_action=delete_pod"
