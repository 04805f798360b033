"""The pipeline end to end: fake cluster over real sockets, real Execution API, real ledger.

Each case: a real TI, a running pod on the fake API server; the base container ends (or the
pod goes wrong); the pipeline runs; we read back Airflow's XCom table, the fake cluster's pods
and requests, and the ledger.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from finalizer.jobs import JobSpec, OutcomeKind, Step
from tests.pipeline.harness import NS, Rig, World
from tests.support.polling import eventually


def _gone_or_deleting(world: World, spec: JobSpec) -> bool:
    pod = world.pod(spec)
    return pod is None or bool(pod["metadata"].get("deletionTimestamp"))


async def _done_record(rig: Rig, spec: JobSpec) -> Any:
    assert rig.ledger is not None
    rec = await rig.ledger.get(spec.key)
    assert rec is not None
    assert rec.step is Step.DONE
    return rec


@pytest.mark.anyio
async def test_success_pushes_clean_json_and_deletes_the_pod(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom=json.dumps({"rows": 3, "ok": True}))
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.exit_code == 0
    assert world.xcom(spec) == {"rows": 3, "ok": True}
    raw = world.xcom_raw(spec)
    assert json.loads(raw) if isinstance(raw, str) else raw == {"rows": 3, "ok": True}  # not double-encoded
    assert _gone_or_deleting(world, spec)
    assert world.deletes(spec) == 1
    rec = await _done_record(rig, spec)
    assert rec.outcome == outcome
    assert rec.xcom_value == {"rows": 3, "ok": True}
    assert set(rec.step_times) >= {Step.COMPLETION_SEEN, Step.XCOM_PERSISTED, Step.XCOM_PUSHED, Step.DONE}
    # Its stored return_value is the record a re-run reads: no marker XCom for a plain success.
    assert not world.has_xcom(spec, "__kpo_finalizer_outcome")


@pytest.mark.anyio
async def test_failure_pushes_the_xcom_labels_and_deletes(world: World, rig: Rig) -> None:
    """As upstream's trigger_reentry/cleanup: a failed task's sidecar XCom still reaches Airflow."""
    spec = world.make_job(xcom="[1]")
    world.kube.terminate(NS, spec.pod.name, exit_code=3, message="boom: bad input")
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.exit_code == 3
    assert "boom: bad input" in (outcome.termination_message or "")
    assert world.xcom(spec) == [1]
    assert (await _done_record(rig, spec)).xcom_value == [1]
    assert world.deletes(spec) == 1
    marker = world.xcom(spec, "__kpo_finalizer_outcome")  # a failure is recorded in a marker
    assert marker["job"] == spec.key
    assert marker["outcome"]["kind"] == "failed"
    assert "log_tail" not in marker["outcome"]
    patches = [r for r in world.kube.requests if r.verb == "patch" and r.name == spec.pod.name]
    assert patches, "a failed pod is labelled already_checked before deletion"


@pytest.mark.anyio
async def test_fail_fast_exit_code_still_pushes_the_xcom(world: World, rig: Rig) -> None:
    """A fail-fast exit code fails without retry, but the XCom the container wrote is kept (as upstream)."""
    spec = world.make_job(xcom='{"partial": 1}', fail_fast_exit_codes=(42,))
    world.kube.terminate(NS, spec.pod.name, exit_code=42)
    outcome = await rig.run(spec)
    assert (outcome.kind, outcome.exit_code) == (OutcomeKind.FAIL_FAST, 42)
    assert world.xcom(spec) == {"partial": 1}
    assert world.deletes(spec) == 1


@pytest.mark.anyio
async def test_skip_on_exit_code(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom="1", skip_on_exit_code=(99,))
    world.kube.terminate(NS, spec.pod.name, exit_code=99)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.SKIPPED
    assert world.xcom(spec) == 1  # upstream's cleanup pushes it before raising the skip
    assert _gone_or_deleting(world, spec)


@pytest.mark.anyio
async def test_failure_fans_out_multiple_outputs_but_registers_no_task_map(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom=json.dumps({"a": 1, "b": [1, 2]}), multiple_outputs=True, mapped_length=True)
    world.kube.terminate(NS, spec.pod.name, exit_code=1)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert world.xcom(spec, "a") == 1
    assert world.xcom(spec) == {"a": 1, "b": [1, 2]}
    ti = spec.ti
    assert world.env.get_task_map_length(ti.dag_id, ti.run_id, ti.task_id) is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("xcom", "sidecar", "needle"),
    [("{not json", True, "JSON"), (None, False, "sidecar"), ("null", True, None), ("", True, None)],
)
async def test_failure_with_an_unusable_or_empty_xcom_stays_the_same_failure(
    world: World, rig: Rig, xcom: str | None, sidecar: bool, needle: str | None
) -> None:
    spec = world.make_job(xcom=xcom, sidecar=sidecar)
    world.kube.terminate(NS, spec.pod.name, exit_code=2, message="bad input")
    outcome = await rig.run(spec)
    assert (outcome.kind, outcome.exit_code, outcome.event_status) == (OutcomeKind.FAILED, 2, "failed")
    if needle is not None:
        assert needle.lower() in outcome.reason.lower()
    assert not world.has_xcom(spec)
    assert world.deletes(spec) == 1


@pytest.mark.anyio
async def test_failure_of_a_pod_evicted_before_the_read_keeps_its_reason(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom="[1]")
    world.kube.terminate(NS, spec.pod.name, exit_code=4, message="crashed")
    world.kube.faults.add("GET", r".*/exec.*", status=404)  # gone between the watch event and the read
    outcome = await rig.run(spec)
    assert (outcome.kind, outcome.exit_code) == (OutcomeKind.FAILED, 4)
    assert "XCom was lost" in outcome.reason
    assert not world.has_xcom(spec)


@pytest.mark.anyio
async def test_pod_that_never_ran_is_not_read(world: World, rig: Rig) -> None:
    from finalizer.jobs import StartupRules

    spec = world.make_job(xcom="[1]", start=False, startup=StartupRules(schedule_timeout=0.2))
    world.kube.unschedulable(NS, spec.pod.name, "0/3 nodes are available")
    outcome = await rig.run(spec)
    assert (outcome.kind, outcome.exit_code) == (OutcomeKind.FAILED, None)
    assert world.xcom_reads(spec) == 0
    assert not world.has_xcom(spec)


@pytest.mark.anyio
@pytest.mark.parametrize("content", [None, "", "null"])
async def test_empty_or_null_xcom_is_success_without_a_return_value(
    world: World, rig: Rig, content: str | None
) -> None:
    spec = world.make_job(xcom=content)
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert not world.has_xcom(spec)
    rec = await _done_record(rig, spec)
    assert rec.xcom_read
    assert rec.xcom_value is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("xcom", "settings", "needle"),
    [
        ("{not json", {}, "JSON"),
        (json.dumps({"blob": "x" * 4000}), {"xcom_max_bytes": 1000}, "larg"),
        ("[1, 2]", {"multiple_outputs": True}, "multiple_outputs requires"),
        ('"abc"', {"mapped_length": True}, "cannot be mapped over"),
    ],
)
async def test_unusable_xcom_fails_the_task_clearly_and_still_cleans_up(
    world: World, rig: Rig, xcom: str, settings: dict[str, Any], needle: str
) -> None:
    spec = world.make_job(xcom=xcom, **settings)
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert needle.lower() in outcome.reason.lower()
    assert not world.has_xcom(spec)
    assert _gone_or_deleting(world, spec)


@pytest.mark.anyio
async def test_missing_sidecar_is_a_clear_failure(world: World, rig: Rig) -> None:
    spec = world.make_job(sidecar=False)
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert "airflow-xcom-sidecar" in outcome.reason or "sidecar" in outcome.reason.lower()
    assert not world.has_xcom(spec)


@pytest.mark.anyio
async def test_no_xcom_push_needs_no_sidecar(world: World, rig: Rig) -> None:
    spec = world.make_job(sidecar=False, do_xcom_push=False)
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert not world.has_xcom(spec)
    assert world.deletes(spec) == 1


@pytest.mark.anyio
async def test_pod_evicted_before_the_read_is_failed_with_xcom_lost(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom='{"a": 1}')
    world.kube.evict(NS, spec.pod.name)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert "XCom" in outcome.reason
    assert "lost" in outcome.reason or "cannot" in outcome.reason
    assert not world.has_xcom(spec)


@pytest.mark.anyio
async def test_pod_deleted_before_completion_is_failed_with_xcom_lost(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom='{"a": 1}')
    world.kube.force_delete(NS, spec.pod.name)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert "XCom was lost" in outcome.reason
    assert not world.has_xcom(spec)


@pytest.mark.anyio
async def test_keep_pod_labels_it_and_keeps_it(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom="5", on_finish_action="keep_pod")
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert world.xcom(spec) == 5
    pod = world.pod(spec)
    assert pod is not None
    assert pod["metadata"]["labels"].get("already_checked") == "True"
    assert world.deletes(spec) == 0


@pytest.mark.anyio
async def test_multiple_outputs_and_mapped_length(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom=json.dumps({"a": 1, "b": [1, 2]}), multiple_outputs=True, mapped_length=True)
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert world.xcom(spec, "a") == 1
    assert world.xcom(spec, "b") == [1, 2]
    assert world.xcom(spec) == {"a": 1, "b": [1, 2]}
    ti = spec.ti
    assert world.env.get_task_map_length(ti.dag_id, ti.run_id, ti.task_id) == 2


@pytest.mark.anyio
async def test_waits_for_completion_on_the_shared_watch(world: World, rig: Rig) -> None:
    import anyio

    spec = world.make_job(xcom='"late"')
    ended = world.make_job(xcom='"early"')  # on the same watch, its base container already done
    world.kube.terminate(NS, ended.pod.name, exit_code=0)
    steps: list[Step] = []

    async def on_step(job: JobSpec, reached: Any) -> None:
        steps.append(reached.step)

    async with anyio.create_task_group() as tg:
        result: list[Any] = []

        async def run() -> None:
            result.append(await rig.run(spec, on_step))

        tg.start_soon(run)
        # The job's subscription started the shared watch (LIST, then WATCH): the job knows its pod.
        await eventually(lambda: any(r.verb == "watch" for r in world.kube.requests), what="the watch")
        # Meanwhile a job on the same watch whose pod has ended runs to its end.
        assert (await rig.run(ended)).kind is OutcomeKind.SUCCESS
        assert not result, "the job must wait while the base container runs"
        assert steps == [], "no step is reached while the base container runs"
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
    assert result[0].kind is OutcomeKind.SUCCESS
    assert world.xcom(spec) == "late"
    assert world.xcom(ended) == "early"


@pytest.mark.anyio
@pytest.mark.parametrize("exit_code", [0, 1])  # a failing pod also reads its log tail
@pytest.mark.parametrize("status", [500, 429])
async def test_error_storms_on_every_call_are_retried(
    world: World, rig: Rig, status: int, exit_code: int
) -> None:
    spec = world.make_job(xcom='{"storm": true}')
    world.kube.set_logs(NS, spec.pod.name, "base", ["working", "done"])
    world.kube.terminate(NS, spec.pod.name, exit_code=exit_code)
    for method, path in [
        ("GET", r"/pods\?"),  # LIST
        ("GET", rf"/pods/{spec.pod.name}$"),  # read
        ("GET", rf"/pods/{spec.pod.name}/exec"),  # XCom read, sidecar stop
        ("GET", rf"/pods/{spec.pod.name}/log"),
        ("PATCH", rf"/pods/{spec.pod.name}"),
        ("DELETE", rf"/pods/{spec.pod.name}"),
    ]:
        if status == 429:
            world.kube.faults.add(method, path, status=429, plaintext_429=True, retry_after=0, times=2)
        else:
            world.kube.faults.add(method, path, status=500, times=3)
    outcome = await rig.run(spec)
    assert outcome.kind is (OutcomeKind.SUCCESS if exit_code == 0 else OutcomeKind.FAILED)
    assert world.xcom(spec) == {"storm": True}  # pushed on failure too, as upstream
    assert _gone_or_deleting(world, spec)
    errors = [r for r in world.kube.requests if r.status == status]
    assert len(errors) >= 6
    assert outcome.log_tail == "working\ndone\n"  # read under the storm too


@pytest.mark.anyio
async def test_log_tail_on_success_only_when_asked_always_on_failure(world: World, rig: Rig) -> None:
    """``log_tail_on_success`` is the operator's ``get_logs``; a failed task's tail is always read."""
    shown = world.make_job(xcom="1", log_tail_lines=2)
    quiet = world.make_job(xcom="2", log_tail_on_success=False)
    failed = world.make_job(xcom="3", log_tail_lines=2, log_tail_on_success=False)
    for spec, code in ((shown, 0), (quiet, 0), (failed, 3)):
        world.kube.set_logs(NS, spec.pod.name, "base", ["one", "two", "three"])
        world.kube.terminate(NS, spec.pod.name, exit_code=code)
    assert (await rig.run(shown)).log_tail == "two\nthree\n"
    assert (await rig.run(quiet)).log_tail is None
    outcome = await rig.run(failed)
    assert (outcome.kind, outcome.log_tail) == (OutcomeKind.FAILED, "two\nthree\n")
    log_reads = {r.name for r in world.kube.requests if r.path.endswith("/log")}
    assert log_reads == {shown.pod.name, failed.pod.name}


@pytest.mark.anyio
async def test_unschedulable_pod_times_out_on_the_schedule_clock(world: World, rig: Rig) -> None:
    from finalizer.jobs import StartupRules

    spec = world.make_job(start=False, startup=StartupRules(schedule_timeout=0.5))
    world.kube.unschedulable(NS, spec.pod.name, "0/3 nodes are available")
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.event_status == "timeout"
    assert "scheduled" in outcome.reason
    assert world.deletes(spec) == 1  # never started: nothing to keep


@pytest.mark.anyio
async def test_fatal_image_error_ends_the_wait_at_once(world: World, rig: Rig) -> None:
    spec = world.make_job(start=False)
    world.kube.schedule(NS, spec.pod.name)
    world.kube.image_pull_failure(NS, spec.pod.name, reason="InvalidImageName", message="bad ref")
    outcome = await rig.run(spec)
    assert outcome.kind in (OutcomeKind.FAIL_FAST, OutcomeKind.FAILED)
    assert "InvalidImageName" in outcome.reason
    assert not world.has_xcom(spec)


@pytest.mark.anyio
async def test_a_policy_waiting_reason_ends_the_wait_at_once_as_fail_fast(world: World, rig: Rig) -> None:
    """``fail_fast_waiting_reasons`` beyond upstream's fatal ones stop start-up without a timeout."""
    from finalizer.jobs import StartupRules

    spec = world.make_job(
        start=False,
        fail_fast_waiting_reasons=("CreateContainerConfigError",),
        startup=StartupRules(startup_timeout=3600, schedule_timeout=3600),
    )
    world.kube.schedule(NS, spec.pod.name)
    world.kube.image_pull_failure(NS, spec.pod.name, reason="CreateContainerConfigError", message="no secret")
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAIL_FAST
    assert "CreateContainerConfigError" in outcome.reason


@pytest.mark.anyio
async def test_a_call_past_call_timeout_is_abandoned_and_retried(world: World, rig: Rig) -> None:
    """Every I/O call is bounded (kubernetes_asyncio sets no timeout on exec): a stuck read is
    cut at ``call_timeout`` and retried as transient."""
    from finalizer.metrics import METRICS
    from tests.pipeline.harness import fast_config

    retried = METRICS.retries.value(step="read_xcom")
    spec = world.make_job(xcom='{"slow": true}')
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    world.kube.faults.add("GET", r".*/exec.*", status=None, latency=5.0)  # the first exec: the read
    config = fast_config(world.config.state_dir, call_timeout=0.5)
    assert rig.ledger is not None
    rec = await rig.ledger.submit(spec, rig.owner)
    outcome = await rig.pipeline(config=config).run(spec, rec)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert world.xcom(spec) == {"slow": True}
    assert METRICS.retries.value(step="read_xcom") == retried + 1  # the first read was abandoned
