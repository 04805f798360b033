"""Per-operator finalization settings: each task says how the triggerer finishes it.

``FinalizingKubernetesPodOperator`` takes every ``KubernetesPodOperator`` argument plus
``finalization=``; with ``deferrable=True`` the triggerer reads the XCom, pushes it, deletes the pod
and ends the task itself — no second trip through the scheduler and a worker.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from triggers.operator import FinalizingKubernetesPodOperator
from triggers.policy import FinalizationPolicy

with DAG(
    "kpo_finalizer_settings",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["kpo-finalizer", "example"],
):
    # All defaults from [kpo_finalizer]: XCom pushed, pod deleted, task ended in the triggerer.
    extract = FinalizingKubernetesPodOperator(
        task_id="extract",
        name="extract",
        namespace="airflow-tasks",
        image="python:3.12-slim",
        cmds=["python", "-c"],
        arguments=["import json; json.dump({'rows': 1200}, open('/airflow/xcom/return.json', 'w'))"],
        deferrable=True,
        do_xcom_push=True,
    )

    # A big result, several XCom keys, a longer log tail for the task log, and exit code 2
    # ("bad input") failing at once without retries; exit 3 means "nothing to do" -> skipped.
    transform = FinalizingKubernetesPodOperator(
        task_id="transform",
        name="transform",
        namespace="airflow-tasks",
        image="python:3.12-slim",
        cmds=["python", "/app/transform.py"],
        deferrable=True,
        do_xcom_push=True,
        multiple_outputs=True,
        skip_on_exit_code=[3],
        retries=2,
        finalization=FinalizationPolicy(
            xcom_max_bytes=8 * 1024 * 1024,
            log_tail_lines=200,
            fail_fast_exit_codes=(2,),
            fail_fast_message_pattern=r"^BAD INPUT:",
        ),
    )

    # Keep the pod for debugging (it is labelled already_checked=true, as the provider does).
    load = FinalizingKubernetesPodOperator(
        task_id="load",
        name="load",
        namespace="airflow-tasks",
        image="python:3.12-slim",
        cmds=["python", "/app/load.py"],
        deferrable=True,
        do_xcom_push=False,
        on_finish_action="keep_pod",
    )

    extract >> transform >> load
