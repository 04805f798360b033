"""End to end on SQLite: a real `airflow triggerer` finishes KPO tasks itself (no scheduler, no worker).

One Airflow home and one triggerer for the module (``conftest.py``; start-up and cold starts are
paid once):
- the scenario matrix (``scenarios.CASES``) and a warm run that prints its latency (speed itself
  is measured by ``kpo-finalizer bench e2e``);
- the paths that end in a worker, finished by a real worker run of ``trigger_reentry``
  (``run_like_worker``: the Task SDK supervisor and task process, the DAG file parsed again):
  finalization disabled (classic event; the provider's own ``trigger_reentry`` reads the XCom
  and deletes the pod), fail-fast (the worker fails the task without retry although
  ``retries=1``), ``fallback_to_worker`` (the worker only ends the task, the XCom stays);
- a user marking a deferred task failed: on_kill asks Airflow (the supervisor's GetTaskStates),
  sees the task left DEFERRED, deletes the pod.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from finalizer.testing.worker import run_like_worker
from tests.triggers import e2e, scenarios

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow]


@pytest.mark.parametrize("task_id", [c.task_id for c in scenarios.CASES])
def test_scenario(task_id: str, results: dict[str, scenarios.Result], fake_kube: FakeKube) -> None:
    scenarios.check(results[task_id], fake_kube)


def test_warm_run_from_container_exit_to_success(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    results: dict[str, scenarios.Result],
    fake_kube: FakeKube,
    kubeconfig_path: Path,
) -> None:
    """After the matrix (triggerer, finalizer and supervisor warm): base exits → TI SUCCESS in the DB.

    The span from container end to SUCCESS is printed (``pytest -s``), not asserted.
    """
    pod = e2e.new_pod(fake_kube, "sq-warm")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, '{"warm": true}')
    ti = env.create_run(e2e.DAG_ID).ti("d")
    deferred = time.time()
    e2e.defer_sync(env, ti, e2e.build_trigger(kubeconfig_path, pod, "d"))
    # The job follows its pod before it ends, so the span below is completion -> success only.
    wait_for(lambda: e2e.followed_since(fake_kube, pod, deferred), 60, 0.05, "the finalizer to watch the pod")
    started = time.monotonic()
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    final = wait_for_ti_state(ti, {"success", "failed"}, timeout=60)
    seconds = time.monotonic() - started
    print(f"[kpo-finalizer e2e] warm: base exit -> {final.state} in Airflow's DB after {seconds:.2f}s")
    assert final.state == "success", trigger_logs(env, ti)[-3000:]
    assert e2e.xcom(env, ti) == {"warm": True}


ENDED = {"scheduled", "success", "failed", "up_for_retry", "skipped"}


@pytest.fixture
def worker_kubeconfig(kubeconfig_path: Path) -> Iterator[Path]:
    """The DAG file reads the kubeconfig path from the environment when the worker parses it."""
    os.environ["KPO_E2E_KUBECONFIG"] = str(kubeconfig_path)
    yield kubeconfig_path
    os.environ.pop("KPO_E2E_KUBECONFIG", None)


@pytest.mark.anyio
async def test_disabled_finalization_goes_classic_and_the_worker_finishes(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, worker_kubeconfig: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "classic-1")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, '{"a": 1}')
    trigger = e2e.build_trigger(worker_kubeconfig, pod, "no_retry", finalization={"enabled": False})
    ti = env.create_run(e2e.DAG_ID).ti("no_retry")
    await e2e.defer(env, app, ti, trigger)
    assert current_ti(ti).state == "deferred"
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    final = wait_for_ti_state(ti, ENDED, timeout=60)
    # Back to the scheduler for a worker; the pod and its XCom are left to that worker.
    assert final.state == "scheduled", triggerer.logs()[-3000:]
    assert "finalization is disabled" in trigger_logs(env, ti)
    assert fake_kube.get_pod(e2e.NAMESPACE, pod.name) is not None
    assert not e2e.has_xcom(env, ti)

    run_like_worker(env, ti)
    assert current_ti(ti).state == "success"
    assert e2e.xcom(env, ti) == {"a": 1}
    wait_for(lambda: fake_kube.get_pod(e2e.NAMESPACE, pod.name) is None, 30, what="worker deletes the pod")


@pytest.mark.anyio
async def test_fail_fast_exit_code_fails_without_retry_through_the_worker(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, worker_kubeconfig: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "fail-fast")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, '{"partial": 1}')
    trigger = e2e.build_trigger(
        worker_kubeconfig, pod, "fail_fast", finalization={"fail_fast_exit_codes": [3]}
    )
    ti = env.create_run(e2e.DAG_ID).ti("fail_fast")  # retries=1 in the DAG
    await e2e.defer(env, app, ti, trigger)
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=3, message="config error")
    final = wait_for_ti_state(ti, ENDED, timeout=90)
    assert final.state == "scheduled", trigger_logs(env, ti)[-3000:]
    log = trigger_logs(env, ti)
    assert "deterministic failure" in log
    # The finalizer already did the pod's work, its XCom included (as upstream, for any failure).
    wait_for(lambda: fake_kube.get_pod(e2e.NAMESPACE, pod.name) is None, 30, what="finalizer deletes the pod")

    run_like_worker(env, ti)
    after = current_ti(ti)
    assert after.state == "failed"  # not up_for_retry, although retries=1
    assert after.try_number == final.try_number
    assert e2e.xcom(env, ti) == {"partial": 1}


@pytest.mark.anyio
async def test_fallback_to_worker_ends_the_task_in_the_worker_and_keeps_the_xcom(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, worker_kubeconfig: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "to-worker")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, "[1, 2, 3]")
    trigger = e2e.build_trigger(worker_kubeconfig, pod, "c", finalization={"fallback_to_worker": True})
    ti = env.create_run(e2e.DAG_ID).ti("c")
    await e2e.defer(env, app, ti, trigger)
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    final = wait_for_ti_state(ti, ENDED, timeout=90)
    assert final.state == "scheduled", trigger_logs(env, ti)[-3000:]
    assert e2e.xcom(env, ti) == [1, 2, 3]
    wait_for(lambda: fake_kube.get_pod(e2e.NAMESPACE, pod.name) is None, 30, what="finalizer deletes the pod")

    run_like_worker(env, ti)
    assert current_ti(ti).state == "success"
    assert e2e.xcom(env, ti) == [1, 2, 3]


@pytest.mark.anyio
async def test_user_marks_the_task_failed_then_on_kill_deletes_the_pod(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, kubeconfig_path: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "user-kill")
    ti = env.create_run(e2e.DAG_ID).ti("b")
    deferred = time.time()
    await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig_path, pod, "b"))
    # Followed by the finalizer: run() took the finalizing path (on_kill deletes by the pod's uid).
    wait_for(lambda: e2e.followed_since(fake_kube, pod, deferred), 60, what="the finalizer to watch the pod")
    env.set_ti_state(current_ti(ti).id, "failed")  # what "mark failed" in the UI does to the row
    wait_for(lambda: fake_kube.get_pod(pod.namespace, pod.name) is None, 60, what="on_kill to delete the pod")
    # Deleted through the finalizer, with the uid precondition (by name only where none runs).
    wait_for(lambda: f"deleted (uid {pod.uid})" in trigger_logs(env, ti), 30, what="on_kill's log line")
    log = trigger_logs(env, ti)
    assert "on_kill: task is failed; deleting pod" in log, triggerer.logs()[-3000:]
    assert current_ti(ti).state == "failed"
