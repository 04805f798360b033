"""A batch Job's finalization where the watches, the Job's TTL or an earlier run race it (issue 16's
review): the pod LIST answering before the Job's, a Job deleted as it finishes, a re-run after an
earlier run pushed the list but did not clean up, and the bound on member reads at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

from finalizer.batch_job import BatchJobView
from finalizer.batch_members import MEMBER_READS
from finalizer.batch_pipeline import final_job
from finalizer.jobs import OutcomeKind, Step
from finalizer.kube.subscription import JobSubscription
from tests.pipeline.harness import NS, Rig, World, cancel_at, rerun_elsewhere
from tests.pipeline.test_batch_jobs import Kubelet, assert_read_once, finalize
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

#: The Job watch's first LIST (not its WATCH).
JOB_LIST = r"/apis/batch/v1/namespaces/[^/]+/jobs(?![^?]*\?[^#]*watch=(true|1))"


async def test_pod_list_first_with_every_base_ended_still_reads_and_finishes(world: World, rig: Rig) -> None:
    """Every member's base has ended (sidecars up) before the run starts and the Job LIST answers
    last: the member wake comes while the Job is unknown, so only waking on the Job's change reads."""
    spec = world.make_batch_job({"parallelism": 2, "completions": 2})
    kubelet = Kubelet(world, spec)
    await eventually(lambda: len(world.kube.job_pods(NS, spec.pod.name)) == 2, what="both pods created")
    kubelet.step()
    world.kube.faults.add("GET", JOB_LIST, status=None, latency=1.0, times=1)
    with anyio.fail_after(30):
        outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    assert world.xcom(spec) == [{"pod": n} for n in sorted(kubelet.ran)]
    assert_read_once(world, spec, kubelet.ran)


async def test_job_deleted_by_its_ttl_as_it_completes_still_succeeds(world: World, rig: Rig) -> None:
    """``ttlSecondsAfterFinished: 0``: the fake deletes the Job right after its Complete condition;
    the task succeeds with the ``job`` XCom of that last state, and the Job is gone."""
    spec = world.make_batch_job({"parallelism": 2, "completions": 2, "ttl_seconds_after_finished": 0})
    outcome, kubelet = await finalize(rig, world, spec)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    assert world.xcom(spec) == [{"pod": n} for n in sorted(kubelet.ran)]
    job = world.xcom(spec, "job")
    assert job["metadata"]["uid"] == spec.pod.uid
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    await eventually(lambda: world.kube.get_job(NS, spec.pod.name) is None, what="the TTL deleted the Job")
    assert_read_once(world, spec, kubelet.ran)


def _job(status: dict[str, Any], rv: str) -> BatchJobView:
    return BatchJobView(
        {
            "metadata": {"name": "j", "uid": "J", "resourceVersion": rv, "namespace": NS},
            "spec": {},
            "status": status,
        }
    )


COMPLETE = _job({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}, "3")
RUNNING = _job({"active": 1}, "2")


@pytest.mark.parametrize(
    ("seen", "expected"),
    [([RUNNING, COMPLETE], COMPLETE), ([RUNNING], None), ([], None)],
    ids=["complete", "running", "unseen"],
)
def test_a_job_gone_is_judged_by_its_last_state_if_that_was_terminal(
    seen: list[BatchJobView], expected: BatchJobView | None
) -> None:
    """Complete and deleted before the loop looked (the TTL race the e2e case above cannot force on
    one event loop): the Job watch as its stream leaves it, then gone."""
    jw = JobSubscription(NS, "j", "J", 1)
    for view in seen:
        jw._observe(view, authoritative=True)  # what the shared Job watch's stream does
    jw.set_gone("DELETED")
    assert final_job(jw) is expected


async def test_rerun_after_an_earlier_push_still_cleans_up_pods_and_job(
    world: World, rig: Rig, tmp_path: Path
) -> None:
    """The earlier run pushed the list and stopped before its cleanup; a re-run elsewhere takes its
    success from the stored return_value and still deletes the pods and (``delete_job``) the Job."""
    spec = world.make_batch_job({"parallelism": 2, "completions": 2}, job={"delete_job": True})
    kubelet = Kubelet(world, spec)
    async with anyio.create_task_group() as tg:
        tg.start_soon(kubelet.run_until, lambda: len(kubelet.ran) == 2)
        with anyio.fail_after(60):
            await cancel_at(rig, spec, Step.XCOM_PUSHED)
    assert world.has_xcom(spec)
    names = sorted(kubelet.ran)
    assert all(world.kube.get_pod(NS, n) is not None for n in names), "the cancelled run deleted nothing"
    with anyio.fail_after(30):
        again = await rerun_elsewhere(world, spec, tmp_path)
    assert again.kind is OutcomeKind.SUCCESS, again.reason
    for name in names:
        deletes = [r for r in world.kube.requests if r.verb == "delete" and r.name == name and r.status < 300]
        assert len(deletes) == 1, f"{name} is deleted by the re-run"
    job_deletes = [r for r in world.kube.requests if r.verb == "delete" and r.name == spec.pod.name]
    assert [r.status < 300 for r in job_deletes] == [True], "delete_job: the re-run deletes the Job"


async def test_at_most_member_reads_execs_at_once(world: World, rig: Rig) -> None:
    """Six members end together, each exec held open a while by the fake: never more than
    ``MEMBER_READS`` of them overlap."""
    spec = world.make_batch_job({"parallelism": 6, "completions": 6})
    kubelet = Kubelet(world, spec)
    await eventually(lambda: len(world.kube.job_pods(NS, spec.pod.name)) == 6, what="six pods created")
    kubelet.step()
    world.kube.faults.add("GET", r"/exec", status=None, latency=0.5, times=None)
    task = asyncio.ensure_future(rig.run(spec))
    with anyio.fail_after(60):
        await kubelet.run_until(task.done)
    outcome = await task
    assert outcome.kind is OutcomeKind.SUCCESS, outcome.reason
    execs = [r for r in world.kube.requests if r.verb == "exec" and (r.name or "").startswith(spec.pod.name)]
    assert len(execs) >= 6
    # The fake logs an exec as it opens: its span is its 0.5 s wait, within its read's slot.
    spans = sorted((r.time, r.time + r.duration) for r in execs)
    peak = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert 2 <= peak <= MEMBER_READS, f"{peak} member reads at once"


async def test_moved_mid_job_to_a_triggerer_with_its_own_ledger_fails_rather_than_push_a_hole(
    world: World, rig: Rig, tmp_path: Path
) -> None:
    """README's "Ledger" point: every member read and stopped, nothing pushed yet, then the trigger
    runs on a triggerer with its own empty ledger: the stopped sidecars cannot be read again."""
    spec = world.make_batch_job({"parallelism": 2, "completions": 2})
    kubelet = Kubelet(world, spec)
    async with anyio.create_task_group() as tg:
        tg.start_soon(kubelet.run_until, lambda: len(kubelet.ran) == 2)
        with anyio.fail_after(60):
            await cancel_at(rig, spec, Step.XCOM_PERSISTED)
    assert not world.has_xcom(spec)
    with anyio.fail_after(30):
        again = await rerun_elsewhere(world, spec, tmp_path)
    assert again.kind is OutcomeKind.FAILED, again.reason
    assert "the XCom could not be read" in again.reason
    assert not world.has_xcom(spec), "no list with a hole"
