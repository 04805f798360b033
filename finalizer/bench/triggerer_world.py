"""What ``bench triggerer`` defers: the DAGs per variant and shape, the pods, the triggers, the deferral.

A variant's tasks all use the operator that variant stands for (``baseline`` and ``classic`` the
provider's ``KubernetesPodOperator``, ``finalizing`` ``FinalizingKubernetesPodOperator``), so the
serialized DAG the triggerer's supervisor loads per trigger is the same size in every variant;
only the trigger differs. Each trigger is built the way the worker builds it: the operator's own
``invoke_defer_method`` raises ``TaskDeferred`` with the trigger in it (baseline: a
``DateTimeTrigger`` an hour ahead, a trigger that only waits). The TI then goes QUEUED → RUNNING →
DEFERRED through the real Execution API (``defer_like_worker``).

The classes under ``triggers`` are imported by name: ``finalizer`` must not import that layer
statically (import-linter layers), while the bench, like the demo, is an application above both.
"""

from __future__ import annotations

import asyncio
import importlib
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

VARIANTS = ("baseline", "classic", "finalizing")
SHAPES = ("mapped", "dags", "wide")
CANARY_DAG_ID = "bt_canary"
PROBE_TASK_ID = "probe"
IMAGE = "alpine:3.22"
#: Concurrent deferrals during set-up (the Execution API app serves them from its thread pool).
DEFER_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class TaskSlot:
    """One KPO task instance of a round and the pod it waits for."""

    index: int
    ti: Any  # finalizer.testing.airflow_env.TIInfo
    pod_name: str
    uid: str = ""


def operator_path(variant: str) -> tuple[str, str]:
    """(module, class) of the operator whose tasks the variant defers."""
    if variant == "finalizing":
        return "triggers.operator", "FinalizingKubernetesPodOperator"
    return "airflow.providers.cncf.kubernetes.operators.pod", "KubernetesPodOperator"


def dag_id(variant: str, shape: str, index: int = 0) -> str:
    return f"bt_{variant}_d{index:04d}" if shape == "dags" else f"bt_{variant}_{shape}"


def task_id(shape: str, index: int) -> str:
    return f"pod_{index:04d}" if shape == "wide" else "pod"


def dag_source(variant: str, shape: str, tasks: int, namespace: str) -> str:
    """One DAG file holding the variant's tasks in the given shape."""
    module, cls = operator_path(variant)
    common = f"name='bt', namespace={namespace!r}, image={IMAGE!r}, deferrable=True, do_xcom_push=True"
    if shape == "mapped":
        body = f"""
            with DAG({dag_id(variant, shape)!r}, schedule=None, start_date=START, catchup=False):
                Op.partial(task_id="pod", {common}).expand(arguments=[[str(i)] for i in range({tasks})])
        """
    elif shape == "wide":
        body = f"""
            with DAG({dag_id(variant, shape)!r}, schedule=None, start_date=START, catchup=False):
                for i in range({tasks}):
                    Op(task_id=f"pod_{{i:04d}}", {common})
        """
    else:
        body = f"""
            for i in range({tasks}):
                with DAG(f"bt_{variant}_d{{i:04d}}", schedule=None, start_date=START, catchup=False):
                    Op(task_id="pod", {common})
        """
    head = f"""
        \"\"\"bench triggerer: {variant} / {shape}, {tasks} task instance(s).\"\"\"
        from datetime import datetime

        from airflow.sdk import DAG
        from {module} import {cls} as Op

        START = datetime(2026, 1, 1)
    """
    return textwrap.dedent(head) + textwrap.dedent(body)


def canary_dag_source(canaries: int) -> str:
    """The probe and the canaries: top priority, so a starting triggerer takes them first."""
    return textwrap.dedent(
        f"""
        \"\"\"bench triggerer: the loop-lag probe and {canaries} canary task(s).\"\"\"
        from datetime import datetime

        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow.sdk import DAG

        with DAG({CANARY_DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
            EmptyOperator(task_id={PROBE_TASK_ID!r}, priority_weight=10000)
            for i in range({max(1, canaries)}):
                EmptyOperator(task_id=f"canary_{{i:03d}}", priority_weight=10000)
        """
    )


def create_round(env: Any, variant: str, shape: str, tasks: int, run_id: str) -> list[TaskSlot]:
    """The DAG run(s) of one round and its N task instances, in pod order."""
    if shape == "dags":
        tis = [env.create_run(dag_id(variant, shape, i), run_id).ti("pod") for i in range(tasks)]
    else:
        run = env.create_run(dag_id(variant, shape), run_id)
        if shape == "mapped":
            tis = [run.ti("pod", i) for i in range(tasks)]
        else:
            tis = [run.ti(task_id(shape, i)) for i in range(tasks)]
    prefix = f"{variant[:4]}-{run_id.rsplit('_', 1)[-1]}"
    return [TaskSlot(i, ti, f"{prefix}-{i:04d}") for i, ti in enumerate(tis)]


def pod_labels(slot: TaskSlot) -> dict[str, str]:
    """The labels the provider puts on a KPO pod (what a real cluster would show)."""
    ti = slot.ti
    return {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id.replace(":", "_")[:63],
        "map_index": str(ti.map_index),
        "kubernetes_pod_operator": "True",
        "try_number": "1",
    }


def build_trigger(variant: str, slot: TaskSlot, namespace: str, kubeconfig_path: Path) -> Any:
    """The trigger the worker would defer this task to (see the module docstring)."""
    if variant == "baseline":
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        return DateTimeTrigger(moment=datetime.now(UTC) + timedelta(hours=1))
    module, cls = operator_path(variant)
    return operator_trigger(
        getattr(importlib.import_module(module), cls),
        task_id=slot.ti.task_id,
        pod_name=slot.pod_name,
        namespace=namespace,
        uid=slot.uid,
        kubeconfig_path=kubeconfig_path,
    )


def operator_trigger(
    cls: Any,
    *,
    task_id: str,
    pod_name: str,
    namespace: str,
    uid: str,
    kubeconfig_path: Path,
    image: str = IMAGE,
    **extra: Any,
) -> Any:
    """What a worker's KPO ``cls`` defers to once its pod (``uid``) exists on the fake cluster:
    the operator's own ``invoke_defer_method`` runs and the trigger in its ``TaskDeferred`` is kept."""
    from airflow.sdk.exceptions import TaskDeferred
    from kubernetes.client import models as k8s

    operator = cls(
        task_id=task_id,
        name=pod_name,
        namespace=namespace,
        image=image,
        deferrable=True,
        do_xcom_push=True,
        kubernetes_conn_id=None,
        config_file=str(kubeconfig_path),
        **extra,
    )
    operator.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=pod_name, namespace=namespace, uid=uid))
    try:
        operator.invoke_defer_method()
    except TaskDeferred as deferred:
        return deferred.trigger
    raise RuntimeError(f"{cls.__name__}.invoke_defer_method did not defer")


def queue_all(run_id: str) -> None:
    """What the scheduler does before a worker starts a task: QUEUED, try number raised by one.

    In one UPDATE (``defer_like_worker`` then skips its own per-TI step), so set-up of 1,000
    tasks does not cost 1,000 round trips more.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.run_id == run_id)
            .values(state="queued", try_number=TaskInstance.try_number + 1)
            .execution_options(synchronize_session=False)
        )


async def defer_all(env: Any, pairs: Sequence[tuple[Any, Any]]) -> None:
    """Defer each (TIInfo, trigger) through the Execution API as a worker does, a few at a time."""
    from finalizer.testing.worker import defer_like_worker, worker_client

    limit = asyncio.Semaphore(DEFER_CONCURRENCY)
    async with env.execution_api_app() as app, worker_client(app) as client:

        async def one(ti: Any, trigger: Any) -> None:
            async with limit:
                await defer_like_worker(client, env, ti, trigger)

        await asyncio.gather(*(one(ti, trigger) for ti, trigger in pairs))


def probe_trigger(port: int) -> Any:
    """The loop-lag probe (imported here: ``canary`` imports Airflow, which needs its env first)."""
    from finalizer.bench.canary import LoopLagProbe

    return LoopLagProbe(port=port)


def canary_triggers(dues: Sequence[float]) -> list[Any]:
    from finalizer.bench.canary import CanaryTrigger

    return [CanaryTrigger(due=due) for due in dues]
