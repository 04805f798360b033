"""Try kpo-finalizer without a cluster: three tasks on ``kpo-finalizer fake-kube``.

Start the fake cluster first (README, "Try it on the fake cluster")::

    kpo-finalizer fake-kube --port 8001 --kubeconfig /tmp/fake-kube.json

Each pod says by its ``fake-kube/*`` annotations what the fake kubelet does with it (how long it
runs, its XCom, its exit code; ``kpo-finalizer fake-kube --help`` lists them all); the image and
command are never run. The triggerer then finishes every task itself: XCom pushed, pod deleted,
task ended as success, skipped (exit code 3) or failed (exit code 1, with its message and log).
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from airflow.sdk import DAG

from triggers.operator import FinalizingKubernetesPodOperator

#: The kubeconfig that ``kpo-finalizer fake-kube --kubeconfig`` wrote.
KUBECONFIG = os.environ.get("KPO_FINALIZER_FAKE_KUBECONFIG", "/tmp/fake-kube.json")


def scripted(task_id: str, **annotations: str) -> FinalizingKubernetesPodOperator:
    """A KPO task whose pod the fake kubelet plays as its ``fake-kube/<key>`` annotations say."""
    return FinalizingKubernetesPodOperator(
        task_id=task_id,
        name=task_id.replace("_", "-"),
        namespace="default",
        image="alpine:3",
        cmds=["sh", "-c", "echo the fake cluster never runs this"],
        annotations={f"fake-kube/{key.replace('_', '-')}": value for key, value in annotations.items()},
        config_file=KUBECONFIG,
        kubernetes_conn_id=None,
        in_cluster=False,
        deferrable=True,
        do_xcom_push=True,
        skip_on_exit_code=[3],
        retries=0,
    )


with DAG(
    "kpo_finalizer_fake_cluster",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["kpo-finalizer", "example"],
):
    scripted(
        "compute",
        run_seconds="2",
        xcom=json.dumps({"rows": 42, "table": "events"}),
        logs="reading input\nwrote 42 rows",
    )
    scripted("nothing_to_do", run_seconds="1", exit_code="3", xcom="{}")
    scripted(
        "bad_input",
        run_seconds="1",
        exit_code="1",
        termination_message="input file is empty",
        logs="reading input\nerror: input file is empty",
    )
