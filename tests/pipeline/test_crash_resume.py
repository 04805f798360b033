"""Crash-resume: a job interrupted at any step boundary and resumed by a fresh finalizer ends
with exactly one XCom value, the pod handled once, and the same outcome.

Interruptions: the task cancelled right after a step is recorded, and a child process SIGKILLed
there. The resumer is a new instance (new owner) on the same ledger; it adopts the job because
the old owner is unregistered (cancel) or its heartbeat went stale (kill).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finalizer.jobs import JobSpec, Outcome, OutcomeKind, Step
from finalizer.wiring import StoreSink
from tests.pipeline.harness import BOUNDARIES, NS, Rig, World, cancel_at, kill_at, rerun_elsewhere, resume

VALUE = {"rows": [1, 2, 3], "name": "résumé"}


def _assert_finished_once(world: World, spec: JobSpec, outcome: Outcome) -> None:
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.exit_code == 0
    assert world.xcom(spec) == VALUE
    assert world.xcom_reads(spec) == 1, "the XCom is read from the sidecar exactly once"
    assert world.deletes(spec) == 1, "the pod is deleted exactly once"
    # A plain success's stored return_value is its record: no marker XCom (decisions/marker.py).
    assert not world.has_xcom(spec, "__kpo_finalizer_outcome")


@pytest.mark.anyio
@pytest.mark.parametrize("step", BOUNDARIES, ids=lambda s: s.name)
async def test_cancelled_at_each_boundary_resumes_to_the_same_end(world: World, rig: Rig, step: Step) -> None:
    spec = world.make_job(xcom=json.dumps(VALUE))
    world.kube.terminate(NS, spec.pod.name, exit_code=0, message="done")
    await cancel_at(rig, spec, step)
    assert rig.ledger is not None
    await rig.ledger.unregister(rig.owner)  # the crashed instance is gone
    outcome = await resume(world, spec)
    _assert_finished_once(world, spec, outcome)
    assert outcome.termination_message == "done"


@pytest.mark.anyio
async def test_pod_gone_after_the_payload_was_persisted_still_succeeds(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom=json.dumps(VALUE))
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    await cancel_at(rig, spec, Step.XCOM_PERSISTED)
    world.kube.force_delete(NS, spec.pod.name)  # e.g. evicted right after the read
    assert rig.ledger is not None
    await rig.ledger.unregister(rig.owner)
    outcome = await resume(world, spec)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert world.xcom(spec) == VALUE  # pushed from the ledger's copy
    assert world.deletes(spec) == 0


#: Where a process killed right after reaching a step finds its job in the ledger: only the payload
#: (XCOM_PERSISTED) and the end are written; the idempotent steps between are redone.
KILLED_AT = {
    Step.COMPLETION_SEEN: Step.REGISTERED,
    Step.XCOM_PERSISTED: Step.XCOM_PERSISTED,
    Step.SIDECAR_STOPPED: Step.XCOM_PERSISTED,
    Step.POD_CLEANED: Step.XCOM_PERSISTED,
}


@pytest.mark.anyio
@pytest.mark.parametrize("step", list(KILLED_AT), ids=lambda s: s.name)
async def test_killed_process_resumes_to_the_same_end(world: World, tmp_path: Path, step: Step) -> None:
    spec = world.make_job(xcom=json.dumps(VALUE))
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    rec = await kill_at(world, spec, step, tmp_path)
    assert rec.step == KILLED_AT[step]
    outcome = await resume(world, spec, wait_stale=True)
    _assert_finished_once(world, spec, outcome)


@pytest.mark.anyio
async def test_rerun_on_another_triggerer_after_the_pod_is_gone_reads_the_return_value(
    world: World, rig: Rig, tmp_path: Path
) -> None:
    """A plain success writes no marker: the stored return_value of this try shows the success."""
    spec = world.make_job(xcom=json.dumps(VALUE))
    world.kube.terminate(NS, spec.pod.name, exit_code=0, message="bye")
    first = await rig.run(spec)
    assert first.kind is OutcomeKind.SUCCESS
    world.kube.force_delete(NS, spec.pod.name)  # whatever is left of it is gone now
    again = await rerun_elsewhere(world, spec, tmp_path)
    assert again.kind is OutcomeKind.SUCCESS
    assert "its return_value XCom is stored" in again.reason
    assert world.xcom(spec) == VALUE
    assert world.deletes(spec) == 1
    assert world.xcom_reads(spec) == 1


@pytest.mark.anyio
async def test_rerun_on_another_triggerer_after_the_pod_is_gone_reads_the_marker(
    world: World, rig: Rig, tmp_path: Path
) -> None:
    """A failure (with its XCom pushed) is recorded in the marker: the re-run reaches the same outcome."""
    spec = world.make_job(xcom=json.dumps(VALUE))
    world.kube.terminate(NS, spec.pod.name, exit_code=3, message="boom")
    first = await rig.run(spec)
    assert first.kind is OutcomeKind.FAILED
    assert world.xcom(spec) == VALUE  # a failed task's XCom is pushed too (as upstream)
    world.kube.force_delete(NS, spec.pod.name)
    again = await rerun_elsewhere(world, spec, tmp_path)
    assert again == first.model_copy(update={"log_tail": None})  # the marker holds no log tail
    assert world.deletes(spec) == 1
    assert world.xcom_reads(spec) == 1


@pytest.mark.anyio
async def test_marker_of_another_try_is_not_taken(world: World, rig: Rig, tmp_path: Path) -> None:
    """Try 1 failed (marker written); try 2's re-run after its pod is gone must not take it.

    Airflow clears a task instance's XComs when a try starts (``xcom_keys_to_clear``); here the
    return_value is cleared as the task runner does, and try 1's marker is left behind on purpose
    (say, a custom backend failed to delete it): the marker names its job, so it is ignored.
    """
    spec = world.make_job(xcom=json.dumps(VALUE))
    world.kube.terminate(NS, spec.pod.name, exit_code=1)
    assert (await rig.run(spec)).kind is OutcomeKind.FAILED
    assert world.has_xcom(spec, "__kpo_finalizer_outcome")
    world.kube.force_delete(NS, spec.pod.name)
    retry = spec.model_copy(update={"ti": spec.ti.model_copy(update={"try_number": spec.ti.try_number + 1})})
    async with world.airflow.client() as client:
        await client.xcoms.delete(StoreSink.ref(retry, "return_value"))  # the start of try 2
    outcome = await rerun_elsewhere(world, retry, tmp_path)
    assert outcome.kind is OutcomeKind.FAILED
    assert "XCom was lost" in outcome.reason
