"""Task callbacks of tasks ended in the triggerer, in a real Airflow with a DAG processor (issue 14).

A real ``airflow triggerer`` and a real ``airflow dag-processor`` on one PostgreSQL metadata DB.
Airflow 3.3.2's triggerer queues the callback of a task it ended for the DAG processor, which
runs failure and retry callbacks but drops a success callback with a warning (and a skipped task
queues none); so a task with an ``on_success_callback`` or ``on_skipped_callback`` takes the worker
path for that outcome once its XCom is safe, and the worker (the real Task SDK supervisor and task
process) runs it. Each callback writes a file; each file must
appear, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from finalizer.demo.stack import AirflowProcess
from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from finalizer.testing.worker import run_like_worker
from tests.triggers import behaviour, e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

ENDED = {"scheduled", "success", "failed", "up_for_retry", "skipped"}


@pytest.fixture(scope="module")
def metadata_db(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_cb")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, metadata_db: str, kubeconfig_path: Path) -> AirflowEnv:
    return behaviour.prepare_env(tmp_path_factory.mktemp("airflow-callbacks"), metadata_db, kubeconfig_path)


@pytest.fixture(scope="module")
def dag_processor(env: AirflowEnv) -> Iterator[AirflowProcess]:
    """A real ``airflow dag-processor``: it runs the callbacks the triggerer queues."""
    import os

    environ = {**os.environ, **env.env, "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    environ.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    proc = AirflowProcess(["dag-processor"], environ, env.home, env.home / "dag-processor.log")
    try:
        yield proc
    finally:
        proc.stop()


def callback_file(env: AirflowEnv, task_id: str, kind: str) -> Path:
    return env.home / "callbacks" / f"{task_id}.{kind}"


@pytest.mark.anyio
async def test_failure_retry_and_success_callbacks_each_run_once(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    dag_processor: AirflowProcess,
    app: Any,
    fake_kube: FakeKube,
) -> None:
    run = env.create_run(behaviour.DAG_ID)
    pods = {}
    for task_id in ("cb_failure", "cb_retry", "cb_success", "cb_skipped"):
        pods[task_id] = behaviour.pod_for(fake_kube, task_id, xcom=f'{{"task": "{task_id}"}}')
        trigger, _ = behaviour.trigger_for(env, task_id, pods[task_id])
        await behaviour.defer(env, app, run.ti(task_id), trigger)
    # Only success and skipped callbacks ask for the worker, and only for their outcome.
    for task_id, kinds in (("cb_success", {"success"}), ("cb_skipped", {"skipped"}), ("cb_failure", set())):
        assert set(behaviour.trigger_for(env, task_id, pods[task_id])[0].worker_outcomes) == kinds
    fake_kube.terminate(e2e.NAMESPACE, pods["cb_failure"].name, exit_code=1, message="boom")
    fake_kube.terminate(e2e.NAMESPACE, pods["cb_retry"].name, exit_code=1, message="boom")
    fake_kube.terminate(e2e.NAMESPACE, pods["cb_success"].name, exit_code=0)
    fake_kube.terminate(e2e.NAMESPACE, pods["cb_skipped"].name, exit_code=99)

    # Ended in the triggerer: the failure and retry callbacks run in the DAG processor.
    failed = wait_for_ti_state(run.ti("cb_failure"), ENDED, timeout=90)
    assert failed.state == "failed", trigger_logs(env, run.ti("cb_failure"))[-3000:]
    retried = wait_for_ti_state(run.ti("cb_retry"), ENDED, timeout=90)
    assert retried.state == "up_for_retry", trigger_logs(env, run.ti("cb_retry"))[-3000:]
    for task_id, kind in (("cb_failure", "failure"), ("cb_retry", "retry")):
        path = callback_file(env, task_id, kind)
        wait_for(path.exists, 120, 0.2, f"the DAG processor to run {task_id}'s {kind} callback")
        assert path.read_text().splitlines() == [f"{run.run_id} 1"]
    assert not callback_file(env, "cb_retry", "failure").exists()  # a retry is not a failure

    # The success callback: the worker path, the XCom already pushed and the pod deleted.
    ti = run.ti("cb_success")
    handed = wait_for_ti_state(ti, ENDED, timeout=90)
    assert handed.state == "scheduled", trigger_logs(env, ti)[-3000:]
    assert "on_success_callback runs only in a worker" in trigger_logs(env, ti)
    assert e2e.xcom(env, ti) == {"task": "cb_success"}
    pod = pods["cb_success"]
    wait_for(lambda: fake_kube.get_pod(pod.namespace, pod.name) is None, 30, what="the pod deleted")
    assert not callback_file(env, "cb_success", "success").exists()
    run_like_worker(env, ti)
    assert current_ti(ti).state == "success"
    assert callback_file(env, "cb_success", "success").read_text().splitlines() == [f"{run.run_id} 1"]
    assert not callback_file(env, "cb_success", "failure").exists()
    assert e2e.xcom(env, ti) == {"task": "cb_success"}

    # The skipped callback: the same worker path.
    ti = run.ti("cb_skipped")
    handed = wait_for_ti_state(ti, ENDED, timeout=90)
    assert handed.state == "scheduled", trigger_logs(env, ti)[-3000:]
    assert "on_skipped_callback runs only in a worker" in trigger_logs(env, ti)
    run_like_worker(env, ti)
    assert current_ti(ti).state == "skipped"
    assert callback_file(env, "cb_skipped", "skipped").read_text().splitlines() == [f"{run.run_id} 1"]
