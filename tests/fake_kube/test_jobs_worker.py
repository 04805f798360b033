"""The provider's own ``KubernetesJobOperator`` run by a real worker (Task SDK supervisor and task
process) against the fake, unchanged: it creates the Job, finds its pods by label, waits for each
base container, reads each sidecar's XCom, waits for the Job's conditions, pushes ``job`` and the
XCom list, and deletes the pods (``on_finish_action``); the Job is left to its TTL, as upstream does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.optional import require

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "fake_kube_jobs"
NAMESPACE = "jobs"
XCOM = '{"rows": 7}'

DAG_SOURCE = f"""
import datetime
import os
from airflow.sdk import DAG
from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

common = dict(
    namespace="{NAMESPACE}", image="alpine:3", kubernetes_conn_id=None, wait_until_job_complete=True,
    config_file=os.environ.get("FAKE_KUBE_JOBS_KUBECONFIG"), job_poll_interval=0.2, get_logs=False,
)
with DAG("{DAG_ID}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False):
    KubernetesJobOperator(
        task_id="one", name="one", parallelism=1, do_xcom_push=True,
        annotations={{"fake-kube/xcom": {XCOM!r}, "fake-kube/run-seconds": "0.1"}}, **common,
    )
    KubernetesJobOperator(
        task_id="three", name="three", parallelism=3, do_xcom_push=True,
        annotations={{"fake-kube/xcom": {XCOM!r}, "fake-kube/run-seconds": "0.1"}}, **common,
    )
    KubernetesJobOperator(
        task_id="broken", name="broken", parallelism=1, backoff_limit=0, do_xcom_push=False,
        annotations={{"fake-kube/exit-code": "4", "fake-kube/run-seconds": "0.1"}}, **common,
    )
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    require("airflow.providers.cncf.kubernetes.operators.job")
    from finalizer.testing.airflow_env import AirflowEnv

    airflow_env = AirflowEnv.prepare(tmp_path_factory.mktemp("airflow-fake-kube-jobs"))
    airflow_env.migrate()
    airflow_env.add_dag("fake_kube_jobs.py", DAG_SOURCE)
    return airflow_env


@pytest.fixture
def kube(fake_kube_thread: Any, tmp_path: Path) -> Iterator[Any]:
    fake_kube_thread.auto_kubelet(start_delay=0.01, run_seconds=0.1)
    os.environ["FAKE_KUBE_JOBS_KUBECONFIG"] = str(fake_kube_thread.write_kubeconfig(tmp_path / "kubeconfig"))
    yield fake_kube_thread
    os.environ.pop("FAKE_KUBE_JOBS_KUBECONFIG", None)


def _run(env: Any, task_id: str) -> Any:
    from finalizer.testing.polling import current_ti
    from finalizer.testing.worker import run_like_worker

    env.activate()
    ti = env.create_run(DAG_ID).ti(task_id)
    run_like_worker(env, ti, log_path=env.home / f"{task_id}.log")
    return current_ti(ti)


def _log(env: Any, task_id: str) -> str:
    return str((env.home / f"{task_id}.log").read_text())


@pytest.mark.parametrize(("task_id", "pods"), [("one", 1), ("three", 3)])
def test_job_operator_succeeds_with_each_pods_xcom(env: Any, kube: Any, task_id: str, pods: int) -> None:
    ti = _run(env, task_id)
    assert ti.state == "success", _log(env, task_id)[-4000:]
    value = env.get_xcom(DAG_ID, ti.run_id, task_id, "return_value")
    assert value == ({"rows": 7} if pods == 1 else [{"rows": 7}] * pods)  # unwrap_single for one pod
    job = env.get_xcom(DAG_ID, ti.run_id, task_id, "job")
    done = [c["type"] for c in job["status"]["conditions"] if c["status"] == "True"]
    assert done == ["SuccessCriteriaMet", "Complete"]
    assert job["status"]["succeeded"] == pods
    name = env.get_xcom(DAG_ID, ti.run_id, task_id, "job_name")
    assert kube.get_job(NAMESPACE, name) is not None  # left to its TTL, as upstream does
    assert kube.job_pods(NAMESPACE, name) == []  # on_finish_action=delete_pod
    assert len([c for c in kube.exec_commands(NAMESPACE) if "kill" in c.text]) == pods


def test_job_operator_fails_a_job_that_exceeds_its_backoff_limit(env: Any, kube: Any) -> None:
    ti = _run(env, "broken")
    assert ti.state == "failed"
    assert "is failed with error 'BackoffLimitExceeded'" in _log(env, "broken")
    job = env.get_xcom(DAG_ID, ti.run_id, "broken", "job")
    assert job["status"]["failed"] == 1
