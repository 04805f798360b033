"""Shared pieces of the "as the classic operator behaves" e2e tests (issue 14).

One DAG whose tasks carry what a user sets on a ``KubernetesPodOperator``: callbacks that write a
file, ``email_on_failure`` / ``email_on_retry``, ``execution_timeout``, a pool. A test defers a
task with the trigger that very task builds (``trigger_for``: the DAG file parsed, the operator's
own ``invoke_defer_method``), so the trigger carries what the operator derives from its settings.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from kubernetes.client import models as k8s

from finalizer.testing.airflow_env import AirflowEnv, TIInfo
from finalizer.testing.worker import defer_like_worker, worker_client
from tests.triggers import e2e

DAG_ID = "kpo_finalizer_behaviour"
POOL = "kpo_behaviour_pool"
MAIL_TO = "ops@example.com"

DAG_SOURCE = f'''
"""Tasks with what users set on a KPO: callbacks, email, execution_timeout, a pool."""
import datetime
import os
import pathlib

from airflow.sdk import DAG
from triggers.operator import FinalizingKubernetesPodOperator

OUT = pathlib.Path(os.environ.get("KPO_CALLBACK_DIR", "callbacks"))


def record(kind):
    def callback(context):
        ti = context["ti"]
        OUT.mkdir(parents=True, exist_ok=True)
        with open(OUT / f"{{ti.task_id}}.{{kind}}", "a") as out:  # one line per call
            out.write(f"{{ti.run_id}} {{ti.try_number}}\\n")

    callback.__name__ = f"record_{{kind}}"
    return callback


def kpo(task_id, **kwargs):
    return FinalizingKubernetesPodOperator(
        task_id=task_id, name=task_id.replace("_", "-"), namespace="{e2e.NAMESPACE}", image="alpine:3",
        deferrable=True, kubernetes_conn_id=None, do_xcom_push=True,
        config_file=os.environ.get("KPO_E2E_KUBECONFIG"), **kwargs,
    )


with DAG("{DAG_ID}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False):
    kpo("cb_success", retries=0, on_success_callback=record("success"), on_failure_callback=record("failure"))
    kpo("cb_failure", retries=0, on_failure_callback=record("failure"))
    kpo("cb_retry", retries=1, on_retry_callback=record("retry"), on_failure_callback=record("failure"))
    kpo("cb_skipped", retries=0, skip_on_exit_code=[99], on_skipped_callback=record("skipped"))
    kpo("mail_fail", retries=0, email=["{MAIL_TO}"], email_on_failure=True, email_on_retry=False)
    kpo("mail_retry", retries=1, email=["{MAIL_TO}"], email_on_failure=False, email_on_retry=True)
    kpo("mail_off", retries=0, email=["{MAIL_TO}"], email_on_failure=False, email_on_retry=False)
    kpo("timeout", retries=0, execution_timeout=datetime.timedelta(seconds=6))
    kpo("pooled", retries=0, pool="{POOL}")
    for action in ("mark_success", "mark_failed", "clear"):
        kpo(action, retries=0)
'''


def prepare_env(home: Path, db_url: str | None, kubeconfig: Path) -> AirflowEnv:
    """A migrated Airflow home with the behaviour DAG and its pool (2 slots, deferred counted)."""
    callbacks = home / "callbacks"
    os.environ["KPO_E2E_KUBECONFIG"] = str(kubeconfig)  # the DAG file reads it when parsed here
    os.environ["KPO_CALLBACK_DIR"] = str(callbacks)
    env = AirflowEnv.prepare(
        home,
        db_url,
        extra_env={"KPO_E2E_KUBECONFIG": str(kubeconfig), "KPO_CALLBACK_DIR": str(callbacks)},
    )
    env.migrate()
    env.add_dag("kpo_behaviour.py", DAG_SOURCE)
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(POOL, 2, "behaviour e2e: counts deferred tasks", include_deferred=True)
    return env


def dag_task(env: AirflowEnv, task_id: str) -> Any:
    """The operator as the DAG file defines it (parsed here, as a worker parses it)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(env.dags_folder))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(DAG_ID)
    assert dag is not None
    return dag.get_task(task_id)


def trigger_for(
    env: AirflowEnv, task_id: str, pod: e2e.PodHandle, *, started: datetime.datetime | None = None
) -> tuple[Any, datetime.timedelta | None]:
    """The trigger (and defer timeout) the DAG's own operator defers with for ``pod``.

    ``started``: the TI's start date the operator anchors ``execution_timeout`` on (a context
    with that ``ti``); None = no context, as ``e2e.build_trigger`` does.
    """
    op = dag_task(env, task_id)
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=pod.name, namespace=pod.namespace, uid=pod.uid))
    context = None if started is None else {"ti": SimpleNamespace(start_date=started, map_index=-1)}
    with pytest.raises(TaskDeferred) as info:
        op.invoke_defer_method(context=context)
    return info.value.trigger, info.value.timeout


async def defer(
    env: AirflowEnv, app: Any, ti: TIInfo, trigger: Any, defer_timeout: datetime.timedelta | None = None
) -> None:
    async with worker_client(app) as client:
        await defer_like_worker(client, env, ti, trigger, trigger_timeout=defer_timeout)


def pod_for(kube: Any, task_id: str, xcom: str | None = None) -> e2e.PodHandle:
    """A running pod for ``task_id`` (unique name), its XCom file written when given."""
    pod = e2e.new_pod(kube, f"{task_id.replace('_', '-')}-{uuid.uuid4().hex[:6]}")
    if xcom is not None:
        kube.write_xcom(pod.namespace, pod.name, xcom)
    return pod


def ledger_step(ledger_path: Path, ti: TIInfo) -> int | None:
    """The finalizer's recorded step for the TI's job (``finalizer.jobs.Step``), None = no job."""
    if not ledger_path.exists():
        return None
    with sqlite3.connect(ledger_path) as db:
        row = db.execute("SELECT step FROM kpof_jobs WHERE ti_id = ?", (ti.id,)).fetchone()
    return None if row is None else int(row[0])
