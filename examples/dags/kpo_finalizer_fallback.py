"""The fallback path: work the triggerer must not finish goes back to a worker.

``fallback_to_worker=True`` lets the finalizer capture the XCom and diagnostics first (so nothing is
lost when the pod goes away) and then hands the end of the task to the operator's
``trigger_reentry`` on a worker, exactly like the classic deferrable KPO. KPO ``callbacks`` take the
same path automatically: they are user code that must run on a worker. ``enabled=False`` behaves
like the upstream trigger altogether.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback
from airflow.sdk import DAG

from triggers.operator import FinalizingKubernetesPodOperator
from triggers.policy import FinalizationPolicy


class NotifyOnCompletion(KubernetesPodOperatorCallback):
    """A KPO callback: runs on the worker, so its task takes the fallback path."""

    @staticmethod
    def on_pod_completion(*, pod, **kwargs) -> None:  # type: ignore[no-untyped-def]
        print(f"pod {pod.metadata.name} completed")


with DAG(
    "kpo_finalizer_fallback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["kpo-finalizer", "example"],
):
    FinalizingKubernetesPodOperator(
        task_id="report_on_worker",
        name="report",
        namespace="airflow-tasks",
        image="python:3.12-slim",
        cmds=["python", "/app/report.py"],
        deferrable=True,
        do_xcom_push=True,
        finalization=FinalizationPolicy(fallback_to_worker=True),
    )

    FinalizingKubernetesPodOperator(
        task_id="with_callbacks",
        name="with-callbacks",
        namespace="airflow-tasks",
        image="python:3.12-slim",
        cmds=["python", "/app/job.py"],
        deferrable=True,
        do_xcom_push=True,
        callbacks=NotifyOnCompletion,
    )

    FinalizingKubernetesPodOperator(
        task_id="classic",
        name="classic",
        namespace="airflow-tasks",
        image="python:3.12-slim",
        cmds=["python", "/app/job.py"],
        deferrable=True,
        do_xcom_push=True,
        finalization=FinalizationPolicy(enabled=False),
    )
