"""Kubernetes Jobs finished in a real ``airflow triggerer`` (SQLite DB and ledger), issue 16.

A real worker runs ``FinalizingKubernetesJobOperator.execute`` (the Job created on the fake, its
pods found, the task deferred to ``FinalizingJobTrigger``); the module's triggerer finishes it:

- success with parallelism 1 and 3: an XCom per pod, the list in pod order, ``unwrap_single``, the
  ``job`` XCom, the pods cleaned up (or kept: ``keep_pod``), the Job deleted only when asked;
- failure (backoffLimit exceeded): the task fails and Airflow's retries apply;
- a pod retried by the Job controller after the worker deferred: read too, its XCom the value;
- the Job deleted mid-way: FAILED, never a success;
- the classic path (a task's policy disabled): upstream's trigger, then the worker's execute_complete;
- a user marking the task failed: on_kill deletes the Job with ``on_kill_propagation_policy``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from finalizer.testing.worker import run_like_worker
from tests.triggers import e2e
from tests.triggers import jobs_e2e as jobs
from tests.triggers.scenarios import env_task_map_length

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow, pytest.mark.airflow]

ENDED = {"success", "failed", "up_for_retry", "scheduled", "skipped", "upstream_failed"}


@pytest.fixture(scope="module")
def env(env: AirflowEnv, kubeconfig_path: Path) -> Iterator[AirflowEnv]:
    yield from jobs.add_dag(env, kubeconfig_path)


@pytest.mark.parametrize(("task_id", "pods"), [("one", 1), ("one_list", 1), ("three", 3)])
def test_success_pushes_each_pod_s_xcom_in_pod_order_and_the_job(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube, task_id: str, pods: int
) -> None:
    ti, job = jobs.defer_job(env, task_id)
    names = jobs.finish_pods(fake_kube, job)
    assert len(names) == pods
    final = wait_for_ti_state(ti, ENDED, timeout=120)
    assert final.state == "success", trigger_logs(env, ti)[-3000:]
    assert final.try_number == ti.try_number  # ended by the triggerer: no worker resumed it
    values = [jobs.payload(n) for n in names]
    expected = values[0] if task_id == "one" else values  # unwrap_single (the default) for one pod
    assert e2e.xcom(env, ti) == expected
    pushed = e2e.xcom(env, ti, "job")
    assert pushed["metadata"]["name"] == job
    assert "Complete" in jobs.true_conditions(pushed)
    assert pushed["status"]["succeeded"] == pods
    assert all(jobs.reads(fake_kube, n) == 1 for n in names)  # each sidecar read once
    # on_finish_action=delete_pod: the pods go; the Job is left to its TTL, as upstream does.
    wait_for(lambda: jobs.pod_names(fake_kube, job) == [], 60, what="the pods deleted")
    assert fake_kube.get_job(jobs.NAMESPACE, job) is not None
    assert "kpo-finalizer: task succeeded" in trigger_logs(env, ti)


def test_a_mapped_downstream_task_gets_the_list_s_length(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    ti, job = jobs.defer_job(env, "mapped_src")
    names = jobs.finish_pods(fake_kube, job)
    final = wait_for_ti_state(ti, ENDED, timeout=120)
    assert final.state == "success", trigger_logs(env, ti)[-3000:]
    assert e2e.xcom(env, ti) == [jobs.payload(n) for n in names]
    # What the task runner records on a worker, so the scheduler can expand ``consume``.
    assert env_task_map_length(final) == 2


def test_without_do_xcom_push_the_job_s_conditions_end_the_task(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    ti, job = jobs.defer_job(env, "no_xcom")
    (pod,) = jobs.start_pods(fake_kube, job)
    assert "airflow-xcom-sidecar" not in str(fake_kube.get_pod(jobs.NAMESPACE, pod))  # none to stop
    fake_kube.terminate(jobs.NAMESPACE, pod, exit_code=0)
    final = wait_for_ti_state(ti, ENDED, timeout=120)
    assert final.state == "success", trigger_logs(env, ti)[-3000:]
    assert not e2e.has_xcom(env, ti)  # no list, as upstream pushes none
    assert "Complete" in jobs.true_conditions(e2e.xcom(env, ti, "job"))
    assert fake_kube.exec_commands(jobs.NAMESPACE, pod) == []


def test_a_job_past_its_backoff_limit_fails_and_airflow_retries(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    ti, job = jobs.defer_job(env, "fails")
    jobs.finish_pods(fake_kube, job, exit_code=3)
    final = wait_for_ti_state(ti, ENDED, timeout=120)
    assert final.state == "up_for_retry", trigger_logs(env, ti)[-3000:]  # retries=1 applies
    cond = fake_kube.get_job(jobs.NAMESPACE, job)
    assert cond is not None
    assert "Failed" in jobs.true_conditions(cond)
    assert not e2e.has_xcom(env, ti)  # a failed pod's XCom is never pushed
    assert "kpo-finalizer: task failed" in trigger_logs(env, ti)


def test_a_pod_the_job_retried_after_the_worker_deferred_is_read_too(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    ti, job = jobs.defer_job(env, "retried")
    (failed,) = jobs.finish_pods(fake_kube, job, exit_code=1)
    # The controller replaces the failed pod (backoffLimit 1) once its sidecar was stopped.
    wait_for(lambda: len(jobs.pod_names(fake_kube, job)) == 2, 60, what="the retry pod")
    (retry,) = jobs.finish_pods(fake_kube, job)
    final = wait_for_ti_state(ti, ENDED, timeout=120)
    assert final.state == "success", trigger_logs(env, ti)[-3000:]
    assert e2e.xcom(env, ti) == jobs.payload(retry)  # the succeeded pod's only: unwrap_single
    assert jobs.reads(fake_kube, failed) == 1  # read (kept for diagnostics) and stopped
    assert jobs.stops(fake_kube, failed) == 1
    pushed = e2e.xcom(env, ti, "job")
    assert (pushed["status"]["failed"], pushed["status"]["succeeded"]) == (1, 1)


def test_the_classic_path_still_ends_the_task_in_the_worker(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    ti, job = jobs.defer_job(env, "classic")
    names = jobs.finish_pods(fake_kube, job)
    # Upstream's KubernetesJobTrigger.run: reads each XCom, waits for the Job, hands back.
    final = wait_for_ti_state(ti, ENDED, timeout=180)
    assert final.state == "scheduled", trigger_logs(env, ti)[-3000:]
    assert "classic path for Job" in trigger_logs(env, ti)
    assert not e2e.has_xcom(env, ti)
    run_like_worker(env, ti)  # the provider's execute_complete: pushes and cleans up
    assert current_ti(ti).state == "success"
    assert e2e.xcom(env, ti) == jobs.payload(names[0])
    wait_for(lambda: jobs.pod_names(fake_kube, job) == [], 60, what="the worker deleted the pods")


def test_fallback_to_worker_ends_the_task_in_the_worker_from_the_marker(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    ti, job = jobs.defer_job(env, "to_worker")
    (name,) = jobs.finish_pods(fake_kube, job)
    final = wait_for_ti_state(ti, ENDED, timeout=120)
    assert final.state == "scheduled", trigger_logs(env, ti)[-3000:]
    assert e2e.xcom(env, ti) == jobs.payload(name)  # pushed by the finalizer already
    wait_for(lambda: jobs.pod_names(fake_kube, job) == [], 60, what="the finalizer deleted the pod")
    run_like_worker(env, ti)  # execute_complete reads the marker: it only ends the task
    assert current_ti(ti).state == "success"
    assert e2e.xcom(env, ti) == jobs.payload(name)


def test_keep_pod_keeps_the_pods_and_delete_job_deletes_the_job(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    run = env.create_run(jobs.DAG_ID)
    kept_ti, kept = jobs.defer_job(env, "keep", run)
    gone_ti, gone = jobs.defer_job(env, "delete_job", run)
    kept_pods = jobs.finish_pods(fake_kube, kept)
    jobs.finish_pods(fake_kube, gone)
    for ti in (kept_ti, gone_ti):
        final = wait_for_ti_state(ti, ENDED, timeout=120)
        assert final.state == "success", trigger_logs(env, ti)[-3000:]
    wait_for(lambda: fake_kube.get_job(jobs.NAMESPACE, gone) is None, 60, what="delete_job to delete the Job")
    assert jobs.pod_names(fake_kube, kept) == kept_pods  # keep_pod: every pod is still there
    assert fake_kube.get_job(jobs.NAMESPACE, kept) is not None
    assert e2e.xcom(env, kept_ti) == jobs.payload(kept_pods[0])
    fake_kube.delete_job(jobs.NAMESPACE, kept)


def test_the_job_deleted_mid_way_fails_the_task(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    since = time.time()
    ti, job = jobs.defer_job(env, "deleted")
    jobs.start_pods(fake_kube, job)
    jobs.wait_followed(fake_kube, since)
    fake_kube.delete_job(jobs.NAMESPACE, job, "Background")
    final = wait_for_ti_state(ti, ENDED, timeout=120)
    assert final.state == "failed", trigger_logs(env, ti)[-3000:]  # never a success without the list
    assert not e2e.has_xcom(env, ti)


def test_user_marks_the_task_failed_then_on_kill_deletes_the_job(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube
) -> None:
    since = time.time()
    ti, job = jobs.defer_job(env, "killed")
    created = fake_kube.get_job(jobs.NAMESPACE, job)
    assert created is not None
    uid = created["metadata"]["uid"]
    pods = jobs.start_pods(fake_kube, job)
    jobs.wait_followed(fake_kube, since)
    env.set_ti_state(current_ti(ti).id, "failed")  # what "mark failed" in the UI does to the row
    wait_for(lambda: fake_kube.get_job(jobs.NAMESPACE, job) is None, 60, what="on_kill to delete the Job")
    wait_for(
        lambda: all(fake_kube.get_pod(jobs.NAMESPACE, p) is None for p in pods), 60, what="the pods deleted"
    )
    # The uid precondition and the operator's on_kill_propagation_policy, then the pods by label.
    # (How many pods it deleted itself depends on the garbage collector's pace: Background.)
    done = f"deleted (uid {uid}, propagationPolicy Background, by the finalizer); "
    wait_for(lambda: done in trigger_logs(env, ti), 30, what="on_kill's log line")
    log = trigger_logs(env, ti)
    assert f"on_kill: task is failed; deleting Job {jobs.NAMESPACE}/{job}" in log, triggerer.logs()[-3000:]
    assert current_ti(ti).state == "failed"
