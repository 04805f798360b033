"""Shared pieces of the end-to-end tests: a DAG, pods on the fake cluster, deferring like a worker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from airflow.sdk.exceptions import TaskDeferred
from kubernetes.client import models as k8s

from finalizer.testing.airflow_env import AirflowEnv, TIInfo
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.worker import defer_like_worker, worker_client
from triggers.operator import FinalizingKubernetesPodOperator
from triggers.pod import FinalizingPodTrigger

DAG_ID = "kpo_finalizer_e2e"
NAMESPACE = "jobs"

#: Task ids of the e2e DAG and their retries (one TI per scenario in one dag run).
TASKS: dict[str, int] = {
    "dict": 0,
    "list": 0,
    "scalar": 0,
    "empty": 0,
    "multi": 0,
    "fail": 0,
    "fail_retry": 1,
    "skip": 0,
    "bad_json": 0,
    "image_pull": 0,
    "evicted": 0,
    "keep": 0,
    "fail_fast": 1,
    "no_retry": 0,
    "mapped_src": 0,
    "a": 0,
    "b": 0,
    "c": 0,
    "d": 0,
    "e": 0,
    "f": 0,
}

DAG_SOURCE = f"""
import datetime
import os
from airflow.sdk import DAG, task
from triggers.operator import FinalizingKubernetesPodOperator

with DAG("{DAG_ID}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False):
    ops = {{}}
    for task_id, retries in {TASKS!r}.items():
        ops[task_id] = FinalizingKubernetesPodOperator(
            task_id=task_id, name=task_id, namespace="{NAMESPACE}", image="alpine:3",
            deferrable=True, retries=retries, kubernetes_conn_id=None,
            config_file=os.environ.get("KPO_E2E_KUBECONFIG"), do_xcom_push=True,
        )

    @task
    def consume(x):
        return x

    consume.expand(x=ops["mapped_src"].output)
"""

#: Triggerer settings for tests: quick heartbeats, a short health threshold (takeover tests).
TRIGGERER_ENV = {
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
}


@dataclass
class PodHandle:
    name: str
    uid: str
    namespace: str = NAMESPACE


def prepare_env(home: Path, db_url: str | None) -> AirflowEnv:
    env = AirflowEnv.prepare(home, db_url)
    env.migrate()
    env.add_dag("kpo_e2e.py", DAG_SOURCE)
    return env


def new_pod(kube: FakeKube, name: str, *, running: bool = True) -> PodHandle:
    pod = kube.create_pod(NAMESPACE, name=name)
    meta = pod["metadata"]
    if running:
        kube.start(NAMESPACE, meta["name"])
    return PodHandle(meta["name"], meta["uid"])


def build_trigger(
    kube_config_path: Path, pod: PodHandle, task_id: str, **operator_kwargs: Any
) -> FinalizingPodTrigger:
    """The trigger the worker would defer to: run the operator's own invoke_defer_method."""
    kwargs: dict[str, Any] = {
        "task_id": task_id,
        "name": pod.name,
        "namespace": pod.namespace,
        "image": "alpine:3",
        "deferrable": True,
        "do_xcom_push": True,
        "kubernetes_conn_id": None,
        "config_file": str(kube_config_path),
        "startup_timeout_seconds": 20,
        "schedule_timeout_seconds": 20,
    }
    kwargs.update(operator_kwargs)
    op = FinalizingKubernetesPodOperator(**kwargs)
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=pod.name, namespace=pod.namespace, uid=pod.uid))
    with pytest.raises(TaskDeferred) as info:
        op.invoke_defer_method()
    trigger = info.value.trigger
    assert isinstance(trigger, FinalizingPodTrigger)
    return trigger


async def defer(env: AirflowEnv, app: Any, ti: TIInfo, trigger: FinalizingPodTrigger) -> None:
    async with worker_client(app) as client:
        await defer_like_worker(client, env, ti, trigger)


def defer_sync(env: AirflowEnv, ti: TIInfo, trigger: FinalizingPodTrigger) -> None:
    """``defer`` from synchronous code, with its own Execution API app."""

    async def main() -> None:
        env.activate()
        async with env.execution_api_app() as app:
            await defer(env, app, ti, trigger)

    anyio.run(main)


def followed_since(kube: FakeKube, pod: PodHandle, since: float) -> bool:
    """Someone follows ``pod`` since ``since`` (``time.time()``): a shared watch opened on its
    namespace (a new stream LISTs, then WATCHes), or a running one fetched it once (a subscriber
    joining a running stream gets one GET, as a watch only reports changes). ``since`` is on the
    request log's clock, ``time.time()``."""
    for record in kube.requests:
        if record.time < since or record.namespace != pod.namespace:
            continue
        if record.verb == "watch" or (record.verb == "get" and record.name == pod.name):
            return True
    return False


def xcom(env: AirflowEnv, ti: TIInfo, key: str = "return_value") -> Any:
    return env.get_xcom(ti.dag_id, ti.run_id, ti.task_id, key, ti.map_index)


def has_xcom(env: AirflowEnv, ti: TIInfo, key: str = "return_value") -> bool:
    try:
        xcom(env, ti, key)
    except KeyError:
        return False
    return True


def dumps(value: Any) -> str:
    return json.dumps(value)


def finalizer_env(ledger_url: str, **extra: str) -> dict[str, str]:
    """Triggerer env: test heartbeats plus the finalizer's ``[kpo_finalizer]`` settings."""
    values = dict(TRIGGERER_ENV)
    values["AIRFLOW__KPO_FINALIZER__LEDGER_URL"] = ledger_url
    values["AIRFLOW__KPO_FINALIZER__DRAIN_TIMEOUT"] = "5"
    values.update(extra)
    return values
