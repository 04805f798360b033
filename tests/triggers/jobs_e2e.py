"""Shared pieces of the Job end-to-end tests: a DAG of FinalizingKubernetesJobOperator tasks, a real
worker that creates the Job and defers, and the pods driven by hand on the fake cluster.

The worker is the Task SDK's own (``run_like_worker``): the operator's ``execute`` creates the Job
on the fake (whose job controller makes its pods), finds its pods and defers to
``FinalizingJobTrigger``; the module's real ``airflow triggerer`` then runs it. Each pod's base
container is ended by the test (``finish_pods``), its XCom naming the pod, so the pushed list shows
the order the finalizer chose.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finalizer.testing.airflow_env import AirflowEnv, TIInfo
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.polling import current_ti, wait_for
from finalizer.testing.worker import run_like_worker
from tests.triggers import e2e

DAG_ID = "kpo_finalizer_jobs_e2e"
NAMESPACE = e2e.NAMESPACE
UID_LABEL = "batch.kubernetes.io/controller-uid"

#: Task id -> the operator's own arguments (beyond the common ones in the DAG below).
TASKS: dict[str, dict[str, Any]] = {
    "one": {},
    "one_list": {"unwrap_single": False},
    "three": {"parallelism": 3, "completions": 3},
    "fails": {"backoff_limit": 0, "retries": 1},
    "keep": {"on_finish_action": "keep_pod"},
    "delete_job": {"delete_job": True},
    "deleted": {},
    "killed": {"parallelism": 2, "completions": 2, "on_kill_propagation_policy": "Background"},
    "restart": {"parallelism": 3, "completions": 3},
    "retried": {"backoff_limit": 1},
    "classic": {"finalization": {"enabled": False}, "job_poll_interval": 0.5},
    "mapped_src": {"parallelism": 2, "completions": 2},
    "to_worker": {"finalization": {"fallback_to_worker": True}},
    "no_xcom": {"do_xcom_push": False},
}

DAG_SOURCE = f"""
import datetime
import os
from airflow.sdk import DAG, task
from triggers.job_operator import FinalizingKubernetesJobOperator

with DAG("{DAG_ID}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False):
    ops = {{}}
    for task_id, extra in {TASKS!r}.items():
        ops[task_id] = FinalizingKubernetesJobOperator(
            task_id=task_id, name=task_id.replace("_", "-"), namespace="{NAMESPACE}", image="alpine:3",
            deferrable=True, wait_until_job_complete=True, kubernetes_conn_id=None,
            config_file=os.environ.get("KPO_E2E_KUBECONFIG"), **{{"do_xcom_push": True, **extra}},
        )

    @task
    def consume(x):
        return x

    consume.expand(x=ops["mapped_src"].output)  # maps over the Job's list: one TI per pod
"""


def add_dag(env: AirflowEnv, kubeconfig: Path) -> Iterator[AirflowEnv]:
    """The e2e Airflow home with the Jobs DAG too (a module's ``env`` fixture yields from it); the
    worker's operator reads the kubeconfig path from the environment when it parses the DAG."""
    env.add_dag("kpo_jobs_e2e.py", DAG_SOURCE)
    os.environ["KPO_E2E_KUBECONFIG"] = str(kubeconfig)
    yield env
    os.environ.pop("KPO_E2E_KUBECONFIG", None)


def defer_job(env: AirflowEnv, task_id: str, run: Any = None) -> tuple[TIInfo, str]:
    """A real worker runs the task until it defers; returns its TI and the Job's name."""
    env.activate()
    ti = (run or env.create_run(DAG_ID)).ti(task_id)
    log = env.home / f"worker-{task_id}-{ti.run_id[-6:]}.log"
    run_like_worker(env, ti, log_path=log)
    state = current_ti(ti).state
    assert state == "deferred", f"{task_id} is {state} after the worker:\n{log.read_text()[-3000:]}"
    return ti, str(e2e.xcom(env, ti, "job_name"))


def pod_names(kube: FakeKube, job: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in kube.job_pods(NAMESPACE, job))


def payload(name: str) -> dict[str, str]:
    """The XCom a pod writes: its own name, so the pushed list shows the order."""
    return {"pod": name}


def finish_pods(kube: FakeKube, job: str, *, exit_code: int = 0, count: int | None = None) -> list[str]:
    """Start (if need be), write the XCom of and end the base container of each running-or-pending
    pod of ``job`` not ended yet (up to ``count``, in name order); returns their names."""
    done = []
    for pod in sorted(kube.job_pods(NAMESPACE, job), key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        if base_ended(pod) or pod["metadata"].get("deletionTimestamp"):
            continue
        if pod["status"].get("phase") == "Pending":
            kube.start(NAMESPACE, name)
        kube.write_xcom(NAMESPACE, name, json.dumps(payload(name)))
        kube.terminate(NAMESPACE, name, exit_code=exit_code)
        done.append(name)
        if count is not None and len(done) == count:
            break
    return done


def start_pods(kube: FakeKube, job: str) -> list[str]:
    names = pod_names(kube, job)
    for name in names:
        kube.start(NAMESPACE, name)
    return names


def base_ended(pod: dict[str, Any]) -> bool:
    return any(
        s.get("name") == "base" and "terminated" in (s.get("state") or {})
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    )


def reads(kube: FakeKube, pod: str) -> int:
    """How many times the XCom file of ``pod`` was read through exec."""
    return len([c for c in kube.exec_commands(NAMESPACE, pod) if "return.json" in c.text and "cat" in c.text])


def stops(kube: FakeKube, pod: str) -> int:
    """How many times the sidecar of ``pod`` was stopped (``kill -2``) through exec."""
    return len([c for c in kube.exec_commands(NAMESPACE, pod) if "kill" in c.text])


def job_followed_since(kube: FakeKube, since: float) -> bool:
    """Someone (the finalizer) follows Jobs in the namespace since ``since`` (``time.time()``)."""
    return any(
        r.time >= since and r.namespace == NAMESPACE and r.resource == "jobs" and r.verb in ("watch", "get")
        for r in kube.requests
    )


def wait_followed(kube: FakeKube, since: float) -> None:
    wait_for(lambda: job_followed_since(kube, since), 90, what="the finalizer to follow the Job")


def true_conditions(job: dict[str, Any]) -> list[str]:
    return [c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
